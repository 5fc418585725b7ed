"""The package layout reads bottom-up: utilities -> text -> data -> kernels -> model -> train ->
checkpoints -> probing/scoring -> decoding -> experiments -> CLI. Every import inside ``cssl``,
including the ones made inside functions, goes down that order, and no module imports itself back
through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cssl"

LAYERS = {
    "cssl": 0, "utils": 0, "text": 1, "data": 2, "kernels": 2, "model": 3, "train": 4, "convert": 5,
    "synth": 5, "deploy": 6, "probe": 6, "curation": 7, "score": 6, "decode": 7, "experiments": 8, "serve": 8, "cli": 9, "__main__": 10,
}
"""Rank of each subpackage: a module may import its own package and packages of a lower rank."""


def module_names(root: Path = ROOT) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts).removesuffix(".__init__")] = path
    return names


def imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``module -> the cssl modules it imports`` (``from pkg import submodule`` counts the submodule)."""
    def owner(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cssl":
                targets = [owner(f"{node.module}.{alias.name}") for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [owner(alias.name) for alias in node.names if alias.name.split(".")[0] == "cssl"]
            edges[name].update(t for t in targets if t != name)
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a package of the same or a higher rank than the importer's."""
    return [
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in edges.items() for target in sorted(targets)
        if layer(target) != layer(name) and LAYERS[layer(target)] >= LAYERS[layer(name)]
    ]


def cycles(edges: dict[str, set[str]]) -> list[str]:
    """Every import path that comes back to a module on it (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                found.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def missing(modules: dict[str, Path]) -> list[str]:
    """Imports of ``cssl`` modules that do not exist (an installed copy elsewhere could hide them)."""
    found = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cssl":
                if node.module not in modules:
                    found.append(f"{name} imports {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{name} imports {a.name}" for a in node.names
                          if a.name.split(".")[0] == "cssl" and a.name not in modules]
    return found


def test_every_imported_module_exists():
    assert missing(module_names()) == []


def test_every_subpackage_has_a_rank():
    assert {layer(name) for name in module_names()} <= set(LAYERS)


def test_imports_go_down_the_layers():
    assert upward(imports(module_names())) == []


def test_no_module_imports_itself_back():
    assert cycles(imports(module_names())) == []


def test_the_checks_see_a_planted_cycle_and_an_upward_import(tmp_path):
    package = tmp_path / "cssl"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("def f():\n    from cssl.data.b import g\n")
    (package / "data" / "b.py").write_text("from cssl.data import a\nfrom cssl.cli import main\nfrom cssl.gone import x\n")
    (package / "cli.py").write_text("")
    edges = imports(module_names(package))
    assert edges["cssl.data.a"] == {"cssl.data.b"}
    assert edges["cssl.data.b"] == {"cssl.data.a", "cssl.cli", "cssl"}  # cssl.gone: its nearest existing package
    assert cycles(edges) == ["cssl.data.a -> cssl.data.b -> cssl.data.a"]
    assert upward(edges) == ["cssl.data.b (data) imports cssl.cli (cli)"]
    assert missing(module_names(package)) == ["cssl.data.b imports cssl.gone"]


def test_the_layout_page_names_every_subpackage():
    page = (ROOT.parent / "docs" / "layout.md").read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert [name for name in packages if f"\n  {name}/" not in page] == []
