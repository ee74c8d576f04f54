"""Writes the flag tables of docs/cli.md from the ``qa-headpose`` parser: the help texts are the reference.

    python tools/cli_reference.py          # rewrite the block between the markers in docs/cli.md
    python tools/cli_reference.py --check  # exit 1 if docs/cli.md is stale (tests/test_docs.py runs this)

Each subcommand (and each of ``data``'s) gets a table of its arguments: name, default, help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qa_headpose.cli.main import build_parser
from qa_headpose.core.atomic import write_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
START, END = "<!-- cli-reference:start (python tools/cli_reference.py) -->", "<!-- cli-reference:end -->"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name, each with its help as its description when it has none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("%%", "%")


def _table(prog: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"#### `{prog}`", "", _cell(parser.description or ""), ""]
    lines += ["| argument | default | what |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.choices:
                name += " " + "\\|".join(str(c) for c in action.choices)
        else:
            name = f"`{action.dest.upper()}`" + ("..." if action.nargs in ("*", "+") else "")
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) else f"`{_cell(default)}`"
        if action.required:
            shown = "required"
        lines.append(f"| {name} | {shown} | {_cell(action.help or '')} |")
    return lines + [""]


def reference() -> str:
    """The markdown between the markers: one table per (sub)command, in ``--help`` order."""
    lines = [START, ""]
    for name, parser in _subparsers(build_parser()).items():
        nested = _subparsers(parser)
        if nested:
            for child_name, child in nested.items():
                lines += _table(f"qa-headpose {name} {child_name}", child)
        else:
            lines += _table(f"qa-headpose {name}", parser)
    return "\n".join(lines + [END])


def updated(text: str) -> str:
    """``text`` (docs/cli.md) with its reference block replaced."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + reference() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/cli.md is up to date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"error: {DOC} has no {START} ... {END} block", file=sys.stderr)
        return 2
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{DOC} is stale: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        write_text(DOC, new)
    print(f"wrote {DOC}" if new != text else f"{DOC} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
