-- Shared by the bench scripts: print the run's figures as one JSON line for bench/load.py.

function report(summary, latency, non2xx)
   local e = summary.errors
   io.write(string.format(
      '\nBENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,'
      .. '"non2xx":%d}\n',
      summary.requests, summary.duration, summary.bytes, latency:percentile(50),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
      non2xx or e.status))
end
