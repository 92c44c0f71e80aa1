"""The model lifecycle: discovery of versions, loading and checking them, the store."""
