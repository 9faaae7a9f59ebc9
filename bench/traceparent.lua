-- bench/traceparent.lua - a wrk script: every request carries a W3C
-- traceparent of its own (random trace and parent ids, sampled), as requests
-- between instrumented services do. The capture keeps such a trace id as it
-- came, so these spans go into the trace_id index at random places.
-- Used by http_bench.sh with BENCH_TRACEPARENT=1.

local random, format = math.random, string.format

function init(args)
  -- one Lua state per wrk thread: seed each differently
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
end

local function hex16()
  return format("%04x", random(0, 65535))
end

function request()
  local trace = hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16()
  local parent = hex16() .. hex16() .. hex16() .. hex16()
  return wrk.format(nil, nil, { ["traceparent"] = "00-" .. trace .. "-" .. parent .. "-01" })
end
