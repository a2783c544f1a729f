-- wrk script: POST grabs from a fixtures file, one line per grab:
-- <buyer token>\t<grab path>\t<body> (gateway/examples/funnel_fixtures.rs writes it).
-- Each thread sends its own lines once, in order; past the end it wraps around (a wrapped line is a
-- replayed quiz token: 403 quiz_failed, so the status counts show whether the file was long enough).
-- WRK_THREADS must equal wrk's -t, so threads take disjoint lines.
-- Usage: WRK_THREADS=2 FIXTURES=fixtures.tsv wrk -t2 -c256 -d5s --latency -s scripts/wrk-funnel.lua http://127.0.0.1:8080
local lines = {}
for line in io.lines(os.getenv("FIXTURES") or "fixtures.tsv") do
  local token, path, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
  lines[#lines + 1] = { token, path, body }
end
dofile((os.getenv("WRK_SCRIPTS") or "scripts") .. "/wrk-report.lua")

function init(args)
  statuses = {}
  nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  i = id
end

function request()
  local l = lines[(i % #lines) + 1]
  i = i + nthreads
  return wrk.format("POST", l[2], {
    ["Authorization"] = "Bearer " .. l[1],
    ["Content-Type"] = "application/json",
  }, l[3])
end
