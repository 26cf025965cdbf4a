-- POST a task: title, description, project, priority, status, due date and 0-2 labels.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  return create_request()
end
