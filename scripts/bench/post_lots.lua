-- wrk: POST /api/lots with a lot code unique per thread and request.
local counter = 0
local threads = {}
-- `tid` is set per thread by setup(); a `local tid` here would hide it.
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLOWVIZ_TOKEN")
  prefix = os.getenv("FLOWVIZ_PREFIX") or "B"
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"lot_code":"%s-%d-%d","lot_type":"RAW","weight_kg":"100.5","temperature_c":4}',
    prefix, tid, counter)
  return wrk.format(nil, "/api/lots", nil, body)
end
