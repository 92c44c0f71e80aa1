"""HTTP prediction service (built in the serving issue)."""
