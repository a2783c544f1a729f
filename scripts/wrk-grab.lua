-- wrk script: POST grabs with buyer tokens drawn round-robin from a file.
-- Usage: TOKENS=tokens.txt CAMPAIGN=load wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:8080
-- Prints the count of each status at the end, so a run shows what it measured.
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local path = "/api/v1/campaigns/" .. (os.getenv("CAMPAIGN") or "load") .. "/grab"
dofile((os.getenv("WRK_SCRIPTS") or "scripts") .. "/wrk-report.lua")
local i = 0

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
