-- wrk script for bench/compare: the same chat request with "stream":true, answered as SSE.
-- wrk reads each chunked response to its end, so latency is the time to the last event.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"
wrk.body = '{"model":"sim-model","messages":[{"role":"user","content":' ..
    '"Say hello in one short line."}],"max_tokens":32,"stream":true}'
