"""docs/*.md and README.md cannot go stale: their runnable examples run, their paths exist, the CLI tables match.

A code block is runnable when its fence says so: ```` ```sh test ```` or ```` ```python test ````
(GitHub renders them as plain ``sh`` / ``python``). Each runnable block runs on its own, in a fresh
temporary folder (so it may write files there), with this checkout first on ``PYTHONPATH`` and this
Python's ``bin`` first on ``PATH`` (``qa-headpose`` is the console script): ``sh`` blocks in
``bash -e -o pipefail``, ``python`` blocks in ``python -c``. A block fails on a non-zero exit. Keep them
quick: the shipped sample photo (``qa-headpose predict`` with no input), the ``fast`` model, no dataset.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
FENCE = re.compile(r"^```(sh|python) test\s*\n(.*?)^```\s*$", re.M | re.S)
BLOCK_TIMEOUT_S = 300


def runnable_blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language, line number, code) of every block of ``page`` fenced as runnable."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)]


BLOCKS = [(page, *block) for page in PAGES for block in runnable_blocks(page)]


def run_block(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs one block as the module docstring says."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("QA_HEADPOSE_TRACEBACK", None)
    argv = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


@pytest.mark.parametrize(
    "page, language, line, code", BLOCKS, ids=[f"{p.relative_to(REPO)}:{line}" for p, _, line, _ in BLOCKS]
)
def test_runnable_block(page, language, line, code, tmp_path):
    result = run_block(language, code, tmp_path)
    where = f"{page.relative_to(REPO)}:{line}"
    assert result.returncode == 0, f"{where} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_the_fence_marker_is_found_and_a_failing_block_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```sh test\nexit 3\n```\n\n```python\nnot run\n```\n\n```python test\nprint(1)\n```\n")
    blocks = runnable_blocks(page)
    assert [(lang, line) for lang, line, _ in blocks] == [("sh", 3), ("python", 11)]
    assert run_block(*blocks[0][::2], tmp_path).returncode == 3
    assert run_block("python", blocks[1][2], tmp_path).stdout == "1\n"


def test_the_docs_have_runnable_blocks():
    pages = {p.name for p, *_ in BLOCKS}
    assert {"cli.md", "concurrency.md", "detection.md", "benchmarks.md"} <= pages, pages


# A path inside this repository named in a page: under one of its top folders, with a file suffix.
_REPO_PATH = re.compile(r"(?<![\w./-])((?:qa_headpose|tools|tests|docs|notebooks|weights)/[\w./-]*\w\.[A-Za-z0-9]+)")


def test_every_repository_path_a_page_names_exists():
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        names = set(_REPO_PATH.findall(text))
        names |= {m for m in re.findall(r"\]\(([^)#:\s]+)", text)}  # relative links
        for name in sorted(names):
            if not ((REPO / name).exists() or (page.parent / name).exists()):
                missing.append(f"{page.relative_to(REPO)}: {name}")
    assert missing == [], "pages name files that do not exist (update the page, or the path):\n" + "\n".join(missing)


def test_cli_reference_in_docs_matches_the_parser():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "tools" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.DOC.read_text(encoding="utf-8")
    assert module.updated(text) == text, "docs/cli.md is stale: run python tools/cli_reference.py"


def test_the_readme_is_a_front_door_that_reaches_every_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "the README is the front door: move detail into docs/"
    assert {lang for lang, _, _ in runnable_blocks(REPO / "README.md")} == {"sh", "python"}  # CLI and Python run
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", readme))
    reached = set(linked)
    for name in linked:  # one more step: the pages the README links may link the rest
        reached |= set(re.findall(r"\]\(([\w.-]+\.md)", (REPO / "docs" / name).read_text(encoding="utf-8")))
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= reached


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (command,) = [line.split("#")[0].strip() for line in readme.splitlines() if line.endswith("(= .ci/run)")]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1].strip()
    assert ci == command and "python -m pytest" in ci
    assert "ray" in command.split('"')[1]  # every feature's tests run: Ray Data's too (they skip without it)
