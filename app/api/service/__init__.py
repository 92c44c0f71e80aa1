"""The service's own API: /predict, /health, /metrics, /model."""
