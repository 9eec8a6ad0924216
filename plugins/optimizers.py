"""Built-in optimizers (filled in by the plugin work)."""
