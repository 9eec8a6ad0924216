"""`python -m benchharness` is `bench`."""

from benchharness.cli import app

app()
