"""The tree is the architecture: cmpp/ knows nothing of gateway/, no module imports another in
a circle, and a gateway package is used from outside through the names its __init__ offers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The parts of gateway/, from the top down; a part may import only parts below it.
LAYERS = [
    {"gateway.cli"},
    {"gateway.bench"},
    {"gateway.daemon"},
    {"gateway.api", "gateway.pipeline", "gateway.console"},
    {"gateway.sim"},
    {"gateway.channel", "gateway.store", "gateway.ops"},
    {"gateway.config"},
    {"gateway.status"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    found = {}
    for package in ("cmpp", "gateway"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module of cmpp/ or gateway/ that ``name`` imports, functions' imports included,
    as written (a package, or a module inside one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                head = base[:len(base) - (node.level - 1)]
                module = ".".join(head + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in ("cmpp", "gateway")}


def part_of(module: str) -> str:
    """The part a gateway module belongs to: ``gateway.store.sqlite.writer`` -> gateway.store."""
    return ".".join(module.split(".")[:2])


def test_cmpp_imports_nothing_from_gateway():
    offenders = {name for name, path in modules().items()
                 if name.startswith("cmpp") and any(m.startswith("gateway")
                                                    for m in imports(name, path))}
    assert offenders == set()


def test_no_import_circles():
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = set()
        for target in imports(name, path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        edges[name] = targets
    circles = []
    for start in edges:                    # a path from start back to itself is a circle
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    circles.append(" -> ".join(trail + (start,)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + (nxt,)))
    assert circles == []


def test_parts_import_only_parts_below_them_through_their_packages():
    known = modules()
    wrong = []
    for name, path in known.items():
        if not name.startswith("gateway.") or name.startswith("gateway.providers"):
            continue
        mine = part_of(name)
        for target in imports(name, path):
            if target not in known or not target.startswith("gateway."):
                continue
            theirs = part_of(target)
            if theirs == mine:
                continue
            if RANK[theirs] <= RANK[mine]:
                wrong.append(f"{name} imports {target}: {theirs} is not below {mine}")
            elif target != theirs and (ROOT / theirs.replace(".", "/")).is_dir():
                wrong.append(f"{name} imports {target}, inside {theirs}: use {theirs}'s names")
    assert wrong == []


def test_the_top_level_of_gateway_names_its_parts():
    entries = sorted(p.name for p in (ROOT / "gateway").iterdir() if p.name != "__pycache__")
    assert len(entries) <= 14, entries
    for part in RANK:
        if part.startswith("gateway."):
            path = ROOT / part.replace(".", "/")
            assert path.is_dir() or path.with_suffix(".py").is_file(), part
    for package in (p for p in (ROOT / "gateway").iterdir() if p.is_dir()
                    and (p / "__init__.py").exists()):
        init = (package / "__init__.py").read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(init)), f"{package.name}/__init__.py says nothing"
