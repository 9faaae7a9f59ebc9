-- probe_count.lua - wrk stops after PROBE_REQUESTS responses (default 2000),
-- counted over its one thread.
local want = tonumber(os.getenv("PROBE_REQUESTS") or "2000")
local seen = 0

function response()
  seen = seen + 1
  if seen >= want then
    wrk.thread:stop()
  end
end
