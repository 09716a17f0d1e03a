-- sse-soft-refusal.lua - Apache's own 5xx to an SSE client, answered as a stream the client
-- comes back from (SPEC §4.12), for Apache 2.4 with mod_lua (Debian: in apache2-bin,
-- `a2enmod lua`). deploy/apache/sse-fcgi.conf maps it to /sse-soft-refusal and makes it the
-- ErrorDocument of 500, 502, 503 and 504 for the requests an EventSource makes.
--
-- Why: a standard EventSource fails for good on any status but 200 and 204, and mod_fcgid
-- answers on its own: 503 when it cannot get a process for 64 s (every process of the class
-- busy: FcgidMaxProcessesPerClass), 500 when a process dies or times out before its
-- headers. ErrorDocument alone keeps that status (the error document is an internal
-- redirect that inherits it); a handler that sets its own status replaces it, which is what
-- this one does. It is reached only through ErrorDocument, so only for answers Apache makes
-- itself: a status the responder sends passes through untouched.
--
-- The answer: 200 text/event-stream, "retry: 2000", a comment naming the original status,
-- then the end. No "id:" line, unlike the responder's own refusal: when a process dies in
-- the middle of a stream, Apache appends its error document to the stream already sent,
-- and an id: with the request's Last-Event-ID would move the client's cursor back to where
-- the stream began (measured: "id: 0" after event 1). A block without id: leaves the cursor
-- as it was (Chromium's parser and npm's eventsource alike).

local RETRY_MS = 2000

function handle(r)
    if r.is_initial_req then
        return 404  -- only an error document, never a URL of its own
    end
    local status = string.gsub(r.subprocess_env["REDIRECT_STATUS"] or "", "[^0-9]", "")
    r.status = 200
    r.content_type = "text/event-stream; charset=utf-8"
    r.headers_out["Cache-Control"] = "no-cache"
    r:puts("retry: ", tostring(RETRY_MS), "\n: unavailable (HTTP ", status, "), retry in ",
           tostring(RETRY_MS), " ms\n\n")
    return apache2.OK
end
