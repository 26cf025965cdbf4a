-- Shared by every bench/lua/*.lua script: auth header, parameters from the environment, and a
-- machine-readable summary line that bench/run.py parses.
-- Parameters (set by bench/run.py): BENCH_TOKEN, BENCH_MAX_ID, BENCH_PROJECTS, BENCH_LABELS,
-- BENCH_PATH (page.lua).

wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
wrk.headers["Content-Type"] = "application/json"

MAX_ID = tonumber(os.getenv("BENCH_MAX_ID") or "1")

local function split_numbers(text)
  local out = {}
  for n in string.gmatch(text or "", "%d+") do out[#out + 1] = tonumber(n) end
  return out
end

PROJECTS = split_numbers(os.getenv("BENCH_PROJECTS"))
LABELS = split_numbers(os.getenv("BENCH_LABELS"))
WORDS = {
  "update", "review", "draft", "fix", "migrate", "invoice", "release", "budget", "deploy", "plan",
  "call", "email", "client", "server", "report", "meeting", "design", "refactor", "test", "audit",
}
STATUSES = { "todo", "todo", "in_progress", "done" }

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  math.randomseed(os.time() * 100 + (thread_number or 0))
end

function random_id()
  return math.random(1, MAX_ID)
end

function random_words(low, high)
  local parts = {}
  for i = 1, math.random(low, high) do parts[i] = WORDS[math.random(#WORDS)] end
  return table.concat(parts, " ")
end

function random_labels()
  local k = math.random(0, 2)
  local picked, seen = {}, {}
  while #picked < k and #LABELS > 0 do
    local label = LABELS[math.random(#LABELS)]
    if not seen[label] then seen[label] = true; picked[#picked + 1] = label end
  end
  return "[" .. table.concat(picked, ",") .. "]"
end

function random_due()
  if math.random() < 0.4 then return "null" end
  return string.format('"2027-%02d-%02dT%02d:00:00Z"', math.random(1, 12), math.random(1, 28), math.random(0, 23))
end

function list_request()
  local path = string.format(
    "/api/v1/tasks?project_id=%d&status=todo&status=in_progress&sort=-priority,due_at&limit=50",
    PROJECTS[math.random(#PROJECTS)])
  return wrk.format("GET", path)
end

function create_request()
  local body = string.format(
    '{"title":"%s","description":"%s","project_id":%d,"priority":%d,"status":"%s","due_at":%s,"label_ids":%s}',
    random_words(3, 7), random_words(0, 20), PROJECTS[math.random(#PROJECTS)], math.random(0, 4),
    STATUSES[math.random(#STATUSES)], random_due(), random_labels())
  return wrk.format("POST", "/api/v1/tasks", nil, body)
end

function patch_request()
  local body
  if math.random() < 0.5 then
    body = string.format('{"status":"%s","priority":%d}', STATUSES[math.random(#STATUSES)], math.random(0, 4))
  else
    body = string.format('{"title":"%s","due_at":%s}', random_words(3, 7), random_due())
  end
  return wrk.format("PATCH", "/api/v1/tasks/" .. random_id(), nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
