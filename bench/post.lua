-- wrk script: one single-pair POST, the benchmark's request. The runner passes the body in
-- XOR_BENCH_BODY (each protocol's own encoding of the pair [0, 1]); /predict's by default.
wrk.method = "POST"
wrk.body = os.getenv("XOR_BENCH_BODY") or '{"inputs": [0, 1]}'
wrk.headers["Content-Type"] = "application/json"
