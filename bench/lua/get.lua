-- GET one task (random id of the bench user's).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  return wrk.format("GET", "/api/v1/tasks/" .. random_id())
end
