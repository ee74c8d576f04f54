"""What the commands share: exit codes, `UsageError`, the argparse types and the output checks.

The one set of argument types of ``qa-headpose``; every command module imports them from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A problem with the command line itself (existing output, conflicting flags)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) and exit code 2, without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounded_int(text: str, low: int, high: int | None, expected: str, out_of_range: str | None = None) -> int:
    """``text`` as an integer in [low, high) (high None: no upper bound), else "expected ..., got ..."."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low or (high is not None and value >= high):
        raise argparse.ArgumentTypeError(f"expected {out_of_range or expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0, None, "an integer >= 0")


def camera_index(text: str) -> int:
    """argparse type: a webcam number 0, 1, ..."""
    return _bounded_int(text, 0, 2**31, "a camera index 0, 1, ...")


def port(text: str) -> int:
    """argparse type: a TCP port 0-65535 (0: any free port)."""
    return _bounded_int(text, 0, 65536, "a port 0-65535", "a port 0-65535 (0: any free port)")


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0 (not NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: a comma list of positive integers, duplicates dropped, e.g. ``1,2,4``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    return tuple(dict.fromkeys(values))


def comma_choices(text: str, flag: str, allowed: tuple[str, ...], dedupe: bool = False) -> tuple[str, ...]:
    """The names of a comma list flag; `UsageError` for an empty list or a name not in ``allowed``."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if dedupe:
        values = tuple(dict.fromkeys(values))
    if set(values) - set(allowed) or not values:
        raise UsageError(f"{flag} takes {', '.join(allowed)}. Received: {text!r}")
    return values


def check_output(path: Path, force: bool) -> None:
    """Refuses, before any work, an output that exists (without --force) or cannot be written."""
    from qa_headpose.core.outputs import output_problem

    problem = output_problem(path, force)
    if problem:
        raise UsageError(problem)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    """--runs-dir."""
    p.add_argument(
        "--runs-dir", type=Path, help="folder of your training runs (default: $QA_HEADPOSE_RUNS_DIR or runs)"
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    """--progress / --quiet (exclusive)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", help="progress bars on stderr even when it is not a terminal")
    g.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress on stderr: on a terminal or with --progress, never with --quiet."""
    return not getattr(args, "quiet", False) and (getattr(args, "progress", False) or sys.stderr.isatty())


def progress_bar(args: argparse.Namespace, total: int | None, unit: str, **kwargs):
    """A tqdm bar on stderr, shown as `show_progress` says."""
    from tqdm import tqdm

    from qa_headpose.core.native_stderr import CONSOLE  # stderr, even while TF's native lines are filtered

    return tqdm(total=total, unit=unit, file=CONSOLE, disable=not show_progress(args), dynamic_ncols=True, **kwargs)


class Progress:
    """tqdm bars fed by the package's ``(stage, done, total)`` progress callbacks.

    One bar per first word of the stage ("inputs", "frames x.mp4", "reading"); a new stage with
    the same first word starts that bar again. Use as a context manager; `write` prints a line
    without breaking the bars.
    """

    def __init__(self, args: argparse.Namespace, units: dict[str, str] | None = None):
        self.args, self.units = args, units or {}
        self.bars: dict[str, tuple[str, object]] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not show_progress(self.args):
            return
        slot = stage.split(" ", 1)[0]
        current, bar = self.bars.get(slot, (None, None))
        if bar is None:
            bar = progress_bar(self.args, total, self.units.get(slot, "face"), desc=stage, position=len(self.bars))
        elif current != stage:
            bar.reset(total)
            bar.set_description(stage, refresh=False)
        self.bars[slot] = (stage, bar)
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def write(self, line: str, file=None) -> None:
        """Prints ``line`` to ``file`` (stdout by default), above the bars while they show."""
        if self.bars:
            from tqdm import tqdm

            tqdm.write(line, file=file or sys.stdout)
        else:
            print(line, file=file or sys.stdout, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        for _, bar in reversed(list(self.bars.values())):
            bar.close()
        self.bars.clear()


def format_mae(label: str, m: dict) -> str:
    """One line of per-angle MAE (degrees) and the face count; "n/a" for an angle the data does not annotate."""

    def deg(value: float) -> str:
        return "n/a" if value != value else f"{value:.2f}"

    return (
        f"{label}: MAE yaw {deg(m['yaw'])}  pitch {deg(m['pitch'])}  roll {deg(m['roll'])}  "
        f"mean {deg(m['mean'])} deg  (n={m['count']})"
    )
