"""Meta-tests: every hook, plugin option and CLI command is documented where users look."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchharness import hookspecs
from benchharness.cli import app
from benchharness.plugins import KINDS, get_registry

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
GUIDE = (REPO / "docs" / "writing-plugins.md").read_text()

HOOKS = [
    fn
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("register_")
]
COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def test_there_is_one_hook_per_plugin_kind():
    assert sorted(fn.__name__ for fn in HOOKS) == sorted(f"register_{kind}s" for kind in KINDS)


@pytest.mark.parametrize("hook", HOOKS, ids=lambda fn: fn.__name__)
def test_every_hook_is_documented(hook):
    assert (hook.__doc__ or "").strip(), f"{hook.__name__} has no docstring"
    assert list(inspect.signature(hook).parameters) == ["register"]
    assert hook.__name__ in GUIDE, f"{hook.__name__} is not in docs/writing-plugins.md"


def test_every_builtin_plugin_and_option_is_described():
    registry = get_registry()
    for kind in KINDS:
        assert registry.names(kind), f"no built-in {kind}"
        for name in registry.names(kind):
            cls = registry.get(kind, name).cls
            assert cls.summary(), f"{kind} {name} has no docstring"
            for field_name, field in cls.Options.model_fields.items():
                assert field.description, f"{kind} {name}: option {field_name} has no description"
            assert cls.Options.model_config.get("extra") == "forbid", f"{kind} {name}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_command_has_help_and_is_in_the_readme(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) > 3
    assert f"bench {command}" in README, f"`bench {command}` is not documented in README.md"


def test_every_cli_argument_and_option_has_help():
    for command in app.registered_commands:
        hints = typing.get_type_hints(command.callback, include_extras=True)
        for name in inspect.signature(command.callback).parameters:
            metadata = getattr(hints[name], "__metadata__", ())
            assert any(getattr(m, "help", None) for m in metadata), (
                f"bench {command.callback.__name__}: {name} has no help"
            )


def test_readme_quickstart_commands_exist_in_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target} is not a target"
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_guide_shows_the_example_plugin_code_as_it_is():
    """Every class in the guide's Python blocks is the example package's, verbatim."""
    example = (REPO / "tests/example_plugin/src/bench_example_plugin/__init__.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    classes = [b for b in blocks if b.startswith("class ") or "\nclass " in b]
    assert len(classes) >= 3
    for block in classes:
        code = block[block.index("class ") :].strip()  # the guide's imports are abridged
        assert code in example, f"guide block not in the example plugin:\n{code[:200]}"
