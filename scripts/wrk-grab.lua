-- wrk script: POST grabs with buyer tokens drawn round-robin from a file.
-- Usage: TOKENS=tokens.txt CAMPAIGN=load wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:8080
-- Prints the count of each status at the end, so a run shows what it measured.
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local path = "/api/v1/campaigns/" .. (os.getenv("CAMPAIGN") or "load") .. "/grab"
local threads = {}
local i = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  i = id * 7919
end

function request()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. t,
    ["Content-Type"] = "application/json",
  }, "{}")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("status %d: %d\n", k, v))
  end
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
