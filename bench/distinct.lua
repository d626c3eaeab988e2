-- wrk script for bench/prompts-memory: every request carries a prompt never sent before
-- (the thread id and a counter), so each one is a new key for infertap's prompt tables.
local counter = 0
local thread_id = 0

function setup(thread)
    thread_id = thread_id + 1
    thread:set("tid", thread_id)
end

function request()
    counter = counter + 1
    local body = '{"model":"sim-model","messages":[{"role":"user","content":"distinct prompt ' ..
        tid .. '-' .. counter .. '"}],"max_tokens":4}'
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
