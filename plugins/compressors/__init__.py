"""Built-in weight compressors."""
