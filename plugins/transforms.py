"""Built-in transforms (filled in by the plugin work)."""
