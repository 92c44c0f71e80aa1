"""The HTTP edge: one package per API, each with its routes, wire format, schemas and errors."""
