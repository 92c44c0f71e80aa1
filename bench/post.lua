-- wrk script: single-pair POSTs cycling through the four XOR pairs, so batches hold a mix of
-- rows as real traffic would. The runner passes the bodies in XOR_BENCH_BODIES, one per line
-- (each protocol's own encoding of a pair); /predict's by default.
local bodies = os.getenv("XOR_BENCH_BODIES")
  or '{"inputs": [0, 0]}\n{"inputs": [0, 1]}\n{"inputs": [1, 0]}\n{"inputs": [1, 1]}'
local requests = {}
local sent = 0

init = function(args)
  for body in string.gmatch(bodies, "[^\n]+") do
    requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
end

request = function()
  sent = sent % #requests + 1
  return requests[sent]
end
