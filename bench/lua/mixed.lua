-- The soak mix: 45 % get one, 30 % list 50, 15 % patch, 10 % create.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  local r = math.random()
  if r < 0.45 then return wrk.format("GET", "/api/v1/tasks/" .. random_id()) end
  if r < 0.75 then return list_request() end
  if r < 0.90 then return patch_request() end
  return create_request()
end
