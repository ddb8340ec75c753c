-- wrk: GET /api/traceability/{code} over the benchmark's MIX lots, round robin.
local n = 0
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLOWVIZ_TOKEN")
  count = tonumber(os.getenv("FLOWVIZ_MIX_COUNT"))
end
function request()
  n = n + 1
  return wrk.format("GET", "/api/traceability/MIX-" .. (n % count))
end
