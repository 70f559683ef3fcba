-- A constant request (method, path and headers come from the wrk command line).
dofile("report.lua")

function done(summary, latency, requests)
   report(summary, latency, nil)
end
