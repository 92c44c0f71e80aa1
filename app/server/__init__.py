"""Serving over HTTP: the uvicorn runner, its few overrides, middleware and logging."""
