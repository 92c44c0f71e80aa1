"""The prediction core, without HTTP: bit validation, the prediction service, batching."""
