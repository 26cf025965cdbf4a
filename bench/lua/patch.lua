-- PATCH a random task: status and priority, or title and due date.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  return patch_request()
end
