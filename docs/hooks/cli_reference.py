"""mkdocs hook: the CLI reference page (``reference/cli.md``) written from the Typer app itself — every command,
its help and every option with its default (read from the configs, as ``--help`` shows it) — so it cannot drift
from the code. The page holds the marker ``<!-- cli-reference -->`` where the generated text goes."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def _commands(group: Any, path: tuple[str, ...] = ()):
    """(path, command) of every command under ``group`` (typer brings its own click, so no isinstance checks)."""
    for name in sorted(group.commands):
        command = group.commands[name]
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _option_row(param: Any) -> str:
    from bcls.cli import _with_defaults

    names = " / ".join(param.opts + list(getattr(param, "secondary_opts", [])))
    text = _with_defaults(getattr(param, "help", "") or "")
    if getattr(param, "required", False):
        text += " (required)"
    elif not getattr(param, "is_flag", False) and param.default not in (None, (), False) and "[" not in text:
        text += f" [{param.default}]"
    cell = text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")  # no link syntax in a cell
    return f"| `{names}` | {cell} |"


def cli_markdown() -> str:
    """The reference of every ``bcls`` command."""
    import typer.main

    from bcls.cli import app

    root = typer.main.get_command(app)
    parts = []
    for path, command in _commands(root):
        parts += [f"## `bcls {' '.join(path)}`", "", (command.help or "").strip(), ""]
        options = [p for p in command.params if getattr(p, "param_type_name", "") == "option"]
        if options:
            parts += ["| option | meaning [default] |", "|---|---|", *map(_option_row, options), ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_markdown())
    return markdown
