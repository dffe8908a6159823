-- wrk script: the check-stock call at a steady pace (each connection waits 5 ms
-- between calls), for latencies of ordinary traffic rather than of saturation.
dofile("bench/check-stock.lua")
function delay()
  return 5
end
