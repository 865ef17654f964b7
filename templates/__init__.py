"""Built-in themes (data only)."""
