"""Built-in datasets (filled in by the plugin work)."""
