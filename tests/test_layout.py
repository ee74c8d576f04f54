"""The layout's rules, checked by walking the package's source (no import needed, no new dependency).

- inference imports neither datasets nor training nor TensorFlow/Keras, not even inside a function;
- inference imports nothing of predict (the command's orchestration), and predict imports no datasets,
  training, bench, serve, cli nor TensorFlow/Keras;
- datasets import neither training nor TensorFlow/Keras;
- evaluation imports training only inside functions (a Keras run folder), never TensorFlow itself;
- core imports nothing of the package outside core;
- no import cycle between modules or between subpackages;
- no module over MAX_LINES lines, except the ones listed with a reason;
- only the cli modules import argparse, and no module outside cli imports cli;
- one home per fact: a class is defined in one module, the models folder is named in one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qa_headpose"
TF_MODULES = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx")
MAX_LINES = 400
# Modules allowed past MAX_LINES, with the reason; empty is the goal. Remove a module when you split it
# (test_listed_exceptions_exist_and_are_long fails once it is short).
LONG_MODULES: dict[str, str] = {}
# Modules outside qa_headpose/cli/ allowed to import argparse, with the reason; empty is the goal.
ARGPARSE_MODULES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Absolute names of the modules ``path`` imports (all of them, or only those run at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level includes if/try blocks, not function bodies
        nodes = [
            n
            for stmt in tree.body
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            for n in ast.walk(stmt)
        ]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _side(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _violations(
    side: str, forbidden_sides: tuple[str, ...], forbid_tf: bool, top_level_only: bool = False
) -> list[str]:
    modules = _modules()
    bad = []
    for module, path in modules.items():
        if _side(module) != side:
            continue
        for name in sorted(_imports(path, module, top_level_only=top_level_only)):
            if forbid_tf and name.split(".")[0] in TF_MODULES:
                bad.append(f"{module} imports {name}")
            target = _resolve(name, modules) if name.startswith("qa_headpose") else None
            if target and _side(target) in forbidden_sides and target != "qa_headpose":
                bad.append(f"{module} imports {target}")
    return sorted(set(bad))


def test_inference_imports_no_datasets_training_or_tensorflow():
    assert _violations("inference", ("datasets", "training", "bench", "cli", "serve", "predict"), forbid_tf=True) == []


def test_predict_imports_only_inference_and_core():
    assert _violations("predict", ("datasets", "training", "bench", "cli", "serve"), forbid_tf=True) == []
    assert any(_side(m) == "predict" for m in _modules()), "qa_headpose/predict/ is a package now"


def test_datasets_import_no_training_or_tensorflow():
    assert _violations("datasets", ("training", "bench", "cli", "serve"), forbid_tf=True) == []


def test_evaluation_needs_no_training_or_tensorflow_for_a_tflite():
    """Evaluating an exported model needs numpy and LiteRT; only a Keras run folder imports training, lazily."""
    assert _violations("evaluation", ("training", "bench", "cli", "serve"), forbid_tf=True, top_level_only=True) == []
    assert _violations("evaluation", ("bench", "cli", "serve"), forbid_tf=True) == []


def test_core_imports_nothing_of_the_package_outside_core():
    others = ("inference", "datasets", "evaluation", "training", "bench", "cli", "serve", "benchmark", "pipeline_bench")
    assert _violations("core", others, forbid_tf=True) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a directed graph, one per strongly connected component with more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(n, modules) for n in _imports(path, module, top_level_only) if n.startswith("qa_headpose")}
        # A package's own __init__ is not a dependency of its modules.
        edges[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return edges


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "with-function-level"])
def test_no_import_cycle_between_modules(top_level_only):
    assert _cycles(_graph(top_level_only)) == []


def test_no_import_cycle_between_subpackages():
    sides: dict[str, set[str]] = {}
    for module, targets in _graph(top_level_only=True).items():
        sides.setdefault(_side(module), set()).update(_side(t) for t in targets if _side(t) != _side(module))
    sides.pop("<root>", None)  # qa_headpose/__init__ only re-exports the public API
    for targets in sides.values():
        targets.discard("<root>")
    assert _cycles(sides) == []


def test_no_module_over_max_lines():
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and rel not in LONG_MODULES:
            long[rel] = n
    assert long == {}, f"split these modules (or list them in LONG_MODULES with a reason): {long}"


def test_listed_exceptions_exist_and_are_long():
    for rel in LONG_MODULES:
        path = PACKAGE.parent / rel
        if path.exists():
            assert len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES, f"{rel} is short now: unlist it"


def test_only_cli_modules_parse_arguments():
    modules = _modules()
    bad = [
        module
        for module, path in modules.items()
        if _side(module) != "cli"
        and module not in ARGPARSE_MODULES
        and "argparse" in _imports(path, module, top_level_only=False)
    ]
    assert bad == [], "argument parsing belongs in qa_headpose/cli/ (or list the module in ARGPARSE_MODULES)"


def test_nothing_outside_cli_imports_cli():
    others = [s for s in {_side(m) for m in _modules()} if s not in ("cli", "<root>")]
    assert [v for side in sorted(others) for v in _violations(side, ("cli",), forbid_tf=False)] == []
    assert any(_side(m) == "cli" for m in _modules()), "qa_headpose/cli/ is a package now"


def _class_homes() -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {}
    for module, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                homes.setdefault(node.name, []).append(module)
    return homes


def test_each_class_is_defined_in_one_module():
    """A second definition of a class (a result type, a config) is a second home for one fact."""
    assert {name: mods for name, mods in _class_homes().items() if len(mods) > 1} == {}


def test_face_result_lives_in_results_and_keeps_its_old_paths():
    assert _class_homes()["FaceResult"] == ["qa_headpose.inference.results"]
    import qa_headpose
    from qa_headpose.inference import detect, results

    assert qa_headpose.FaceResult is detect.FaceResult is results.FaceResult


# A path to the package's models folder or its sample image, built from the module's own location.
_MODELS_FOLDER = re.compile(r"""__file__.*["'](models|assets)["']""")


def test_the_shipped_files_are_named_in_one_module():
    """Only the registry knows where the shipped models and the sample image live; the others import it."""
    named = [module for module, path in _modules().items() if _MODELS_FOLDER.search(path.read_text(encoding="utf-8"))]
    assert named == ["qa_headpose.inference.registry"]
