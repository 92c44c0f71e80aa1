"""The Open Inference Protocol (KServe / Triton) under /v2."""
