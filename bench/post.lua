-- wrk script: single-pair POST /predict, the benchmark's request.
wrk.method = "POST"
wrk.body = '{"inputs": [0, 1]}'
wrk.headers["Content-Type"] = "application/json"
