-- Concurrent writers: every request POSTs one secret under a key no other request uses.
-- Arguments: a run-unique prefix. Answers outside 2xx are counted as errors.
dofile("report.lua")

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[1] or "RUN"
   counter = 0
   non2xx = 0
end

function request()
   counter = counter + 1
   local key = string.format("WRITER_%s_%d_%d", prefix, thread_id, counter)
   local body = string.format(
      '{"secrets":[{"key":"%s","value":"value-%d-%d-0123456789abcdef","comment":"",'
      .. '"path":"/","tags":[]}]}', key, thread_id, counter)
   return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + (thread:get("non2xx") or 0)
   end
   report(summary, latency, total)
end
