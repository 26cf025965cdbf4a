-- List 50 with a filter and a sort: one project's open tasks by priority, then due date (with total).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  return list_request()
end
