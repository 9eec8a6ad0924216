"""Training schemes that use compressors (filled in by the issue-3 work)."""
