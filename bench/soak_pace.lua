-- soak_pace.lua - wrk at a steady pace: each connection waits SOAK_DELAY_MS
-- milliseconds before each request (bench/soak.sh sets it from the rate).
local pause = tonumber(os.getenv("SOAK_DELAY_MS") or "0")

function delay()
  return pause
end
