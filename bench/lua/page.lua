-- GET one fixed list page (BENCH_PATH): first / deep pages, offset or cursor.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local path = os.getenv("BENCH_PATH")

function request()
  return wrk.format("GET", path)
end
