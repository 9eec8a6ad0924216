"""What every `bench` command shares: the typer app, common options, the plugin registry
and the one place where BenchError and interrupts become messages and exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from benchharness.errors import BenchError
from benchharness.interrupts import Terminated

if TYPE_CHECKING:
    from benchharness.plugins import Registry


app = typer.Typer(
    help="Declarative benchmark harness for neural-network efficiency research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def literal(text: str) -> str:
    """Help text shown as written: typer's rich markup would eat ``[quick]`` and
    ``[default: ...]`` as style tags."""
    try:
        from rich.markup import escape
        from typer.core import HAS_RICH
    except ImportError:  # plain click help: no markup
        return text
    return escape(text) if HAS_RICH else text


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help=literal("results database [default: $BENCH_DB or results/bench.duckdb]")
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a spec value: KEY=VALUE (TOML value), repeatable"),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", help="expand a matrix of over 10,000 jobs without asking"),
]
QuickOption = Annotated[
    bool,
    typer.Option("--quick", help=literal("smoke scale: the spec's [quick] overrides and one seed")),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo("\n".join(map(_printable, message.split("\n"))), err=True)
    return typer.Exit(code)


def _printable(line: str) -> str:
    """``line`` with unprintable characters escaped: a value quoted from a spec may hold a
    line separator (U+0085, U+2028, a form feed) that would split a one-line message."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)


def registry() -> Registry:
    """The plugin registry; one warning line on stderr per entry point that failed to load
    (its plugins are missing, the others work)."""
    from benchharness.plugins import get_registry

    loaded = get_registry()
    for line in loaded.broken:
        typer.echo(f"warning: {line}; its plugins are not available", err=True)
    return loaded


def handles_errors(fn: F) -> F:
    """Turn BenchError into its one-line message and exit code; Ctrl-C into 130, and
    SIGTERM (where a command turns it into :class:`Terminated`) into 143 = 128 + 15, the
    code of a process ended by SIGTERM, so a batch scheduler sees what stopped it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            by, code = (" by SIGTERM", 143) if isinstance(exc, Terminated) else ("", 130)
            raise _fail(
                f"interrupted{by}: every finished job is saved; run the same command to resume",
                code,
            ) from None

    return wrapper  # type: ignore[return-value]
