"""`bench`: a thin typer layer over spec → matrix → executor → store → report.

This is the only place errors become messages and exit codes: 0 fine, 1 some jobs
failed, 2 bad input (spec, options, files), 130 interrupted, 143 terminated (SIGTERM).
One module per group of commands; they are registered here, in the order ``bench
--help`` lists them.
"""

from benchharness.cli import report, run, spec_commands, store_commands
from benchharness.cli.common import app

__all__ = ["app", "main"]

app.command()(run.run)
app.command()(store_commands.export)
app.command(name="import")(store_commands.import_)
app.command()(store_commands.recover)
app.command()(spec_commands.validate)
app.command()(spec_commands.plugins)
app.command()(report.report)


def main() -> None:  # pragma: no cover - console entry point
    app()
