"""Every module imports only from its own layer or below (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lossgeom"

LAYERS = {
    "foundation": 0, "problem": 1, "linalg": 2, "curvature": 3, "analyses": 4, "frontends": 5,
    "cli": 6,
}
FOUNDATION = {"errors", "_checks", "_files", "_timing", "_moved", "tolerances", "results"}
PROBLEM = {"models", "losses", "problem", "datasets", "problem_specs", "layers"}
ANALYSES = {"analysis", "reach", "llc", "report", "info_loss", "loci", "manifold", "flows", "linear"}
FRONTENDS = {"plots", "pages", "demo", "sweep"}
FORBIDDEN_BELOW_FRONTENDS = {"typer", "rich", "matplotlib"}

# The one declared upward import: Report.to_html and Report._repr_html_ render through the front
# end (pages). report.py imports pages inside those methods only, so importing the analyses never
# loads matplotlib or the front end; the check below holds the import to function bodies.
LATE_IMPORTS = {("report", "pages")}


def layer_of(parts: tuple[str, ...]) -> int:
    head = parts[0]
    if head in FOUNDATION:
        return LAYERS["foundation"]
    if head in PROBLEM:
        return LAYERS["problem"]
    if head == "linalg":
        return LAYERS["linalg"]
    if head == "curvature":
        return LAYERS["curvature"]
    if head in ANALYSES:
        return LAYERS["analyses"]
    if head in FRONTENDS:
        return LAYERS["frontends"]
    if head == "cli":
        return LAYERS["cli"]
    if head == "__init__":
        return LAYERS["cli"] + 1  # the package root re-exports everything
    raise AssertionError(f"module {'.'.join(parts)} is not in the layer table")


def modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield path, parts


def function_level_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the import statements inside function bodies."""
    lines = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            lines |= {n.lineno for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def imported_lossgeom_modules(path: Path, parts: tuple[str, ...]):
    tree = ast.parse(path.read_text())
    package = list(parts if path.name == "__init__.py" else parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" at the package root
                    target = [node.names[0].name]
                yield tuple(target), node.lineno
            elif node.module and node.module.split(".")[0] == "lossgeom":
                yield tuple(node.module.split(".")[1:]) or ("__init__",), node.lineno
            elif node.module:
                yield ("<ext>", node.module.split(".")[0]), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "lossgeom":
                    yield tuple(alias.name.split(".")[1:]) or ("__init__",), node.lineno
                else:
                    yield ("<ext>", top), node.lineno


CASES = list(modules())


@pytest.mark.parametrize("path,parts", CASES, ids=[".".join(p) for _, p in CASES])
def test_imports_respect_layers(path, parts):
    own = layer_of(parts)
    for target, line in imported_lossgeom_modules(path, parts):
        if target[0] == "<ext>":
            if own < LAYERS["frontends"]:
                assert target[1] not in FORBIDDEN_BELOW_FRONTENDS, (
                    f"{path.name}:{line} imports {target[1]} below the front-end layer")
            continue
        theirs = layer_of(target)
        if theirs > own and (parts[0], target[0]) in LATE_IMPORTS:
            assert line in function_level_lines(ast.parse(path.read_text())), (
                f"{path.relative_to(SRC)}:{line} imports {target[0]} at module level; the declared "
                "late import must stay inside the method that renders")
            continue
        assert theirs <= own, f"{path.relative_to(SRC)}:{line} imports {'.'.join(target)} from above"


def test_every_module_is_in_the_table():
    for _, parts in CASES:
        layer_of(parts)


def test_declared_late_imports_are_held_to_function_bodies():
    tree = ast.parse("from .pages import a\n\n\ndef render():\n    from .pages import b\n")
    assert function_level_lines(tree) == {5}
    assert ("report", "pages") in LATE_IMPORTS and len(LATE_IMPORTS) == 1
