"""Built-in models (filled in by the plugin work)."""
