-- sse-soft-refusal.lua - lighttpd's own 502/503/504 to an SSE client, answered as a stream
-- the client comes back from (SPEC §4.12), for lighttpd 1.4.69+ with mod_magnet (Debian:
-- lighttpd-modules-lua). Load it with
--   server.modules += ("mod_magnet")
--   magnet.attract-response-start-to = ("/etc/lighttpd/sse-soft-refusal.lua")
-- inside the API's $HTTP["url"] block (deploy/lighttpd/sse-fcgi-external.conf does).
--
-- Why: a standard EventSource fails for good on any status but 200 and 204. lighttpd answers
-- 503 itself while it holds an external backend disabled (its socket refused a connect: the
-- backend is restarting), and 504 when a connect times out. This runs when the response
-- starts, after lighttpd chose the status, so it sees those answers as well as the
-- backend's own. It changes only a 502/503/504 to a request that an EventSource makes
-- (Accept: text/event-stream, or a Last-Event-ID); every other client keeps the honest
-- status, and every other response passes untouched.
--
-- The answer: 200 text/event-stream; "retry:" from the backend's Retry-After when it sent one,
-- else 2000 ms (lighttpd re-enables a refused backend 1-2 s after the last failed connect
-- with "disable-time" => 0, so the client's next try finds it back); an "id:" line with the
-- client's cursor when it sent one (it keeps Last-Event-ID without firing an event); a
-- comment naming the reason; then the end.

local DEFAULT_RETRY_MS = 2000

local r = lighty.r
local status = r.req_item.http_status
if status ~= 502 and status ~= 503 and status ~= 504 then
    return 0
end

local accept = r.req_header["Accept"] or ""
local cursor = r.req_header["Last-Event-ID"]
if cursor == nil then
    -- SPEC §3: last_event_id=N stands for the header with clients that cannot set headers
    cursor = string.match("&" .. (r.req_attr["uri.query"] or ""), "&last_event_id=([0-9]+)")
end
if not string.find(accept, "text/event-stream", 1, true) and cursor == nil then
    return 0
end

local retry_ms = DEFAULT_RETRY_MS
local retry_after = string.match(r.resp_header["Retry-After"] or "", "^([0-9]+)$")
if retry_after ~= nil and #retry_after <= 5 then
    retry_ms = tonumber(retry_after) * 1000
end

local body = { "retry: ", tostring(retry_ms), "\n" }
-- only digits go into the frame: a header may hold anything, and CR or LF would end the line
if cursor ~= nil and string.match(cursor, "^[0-9]+$") then
    body[#body + 1] = "id: " .. cursor .. "\n"
end
body[#body + 1] = ": unavailable (HTTP " .. tostring(status) .. "), retry in "
    .. tostring(retry_ms) .. " ms\n\n"

r.resp_header["Content-Type"] = "text/event-stream; charset=utf-8"
r.resp_header["Cache-Control"] = "no-cache"
r.resp_header["Retry-After"] = ""  -- the empty value removes the header
r.resp_body.set(body)
return 200
