-- wrk script for bench/status_reads.sh: GET /v2/operations/{alias}/status/{id} with a
-- bearer token, the id picked at random over wa1-1 .. wa1-N.
--
-- Environment: OPSQ_TOKEN (bearer token), BENCH_ALIAS (OPSQ), BENCH_LOCATION (wa1),
-- BENCH_JOBS (number of jobs seeded). Requests are built once per thread in init()
-- (a pool of random ids) so the load generator spends its CPU on sending, not on Lua.
-- done() prints one line `BENCH_RESULT {json}` that the shell script parses.

local pool = {}
local pool_size = 16384
local next_index = 0
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

function init(args)
  local token = os.getenv("OPSQ_TOKEN") or ""
  local alias = os.getenv("BENCH_ALIAS") or "OPSQ"
  local location = os.getenv("BENCH_LOCATION") or "wa1"
  local jobs = tonumber(os.getenv("BENCH_JOBS") or "100000")
  math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919)
  local headers = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
  for i = 1, pool_size do
    local path = "/v2/operations/" .. alias .. "/status/" .. location .. "-" .. math.random(1, jobs)
    pool[i] = wrk.format("GET", path, headers)
  end
end

function request()
  next_index = next_index % pool_size + 1
  return pool[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
