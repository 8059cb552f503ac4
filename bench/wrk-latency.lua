-- Prints wrk's latency histogram, one "latency-bucket <µs> <count>" line per value seen, so that the bench can pool
-- the rounds of one side and read their p99 from all of their requests (bench/generator.ts).
done = function(summary, latency, requests)
  local i = 1
  while true do
    local value, count = latency(i)
    if value == nil or value == 0 then break end
    io.write(string.format("latency-bucket %d %d\n", value, count))
    i = i + 1
  end
end
