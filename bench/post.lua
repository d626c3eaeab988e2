-- wrk script for bench/compare: a small, non-streaming chat completion request.
-- The URL given to wrk carries the path (/v1/chat/completions).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"sim-model","messages":[{"role":"user","content":' ..
    '"Say hello in one short line."}],"max_tokens":16}'
