"""The one user-facing error type. Library code raises it; only the CLI turns it into
a message and an exit code."""


class BenchError(Exception):
    """A problem the user can fix (bad spec, missing data, unknown plugin...).

    ``str(error)`` is the complete message, one line per problem, already naming the
    file and key where there is one. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message, stripped (its type's name if
    it has none): for one-line reports of errors raised by libraries (DuckDB's and
    torch's run over several lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class Diverged(RuntimeError):
    """Raised by training code when the loss stops being finite; the job is stored as failed."""
