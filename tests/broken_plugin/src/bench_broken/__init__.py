"""Never imported: the entry point misspells this module's name."""
