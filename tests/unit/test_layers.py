"""The package's shape, as docs/architecture.md draws it: imports follow the flow, no room is a hub.

The flow of a read is discovery -> sources (and rules beside them) ->
accounting -> exposition, over a base of shared types and helpers.  A module
may import its own layer and the layers this table gives it, never one later
in the flow: an import against it fails here, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vz_traffic_exporter"
BASE = {"model", "names", "classes", "cycles", "config", "files", "runner", "privileges", ""}

# layer -> the layers it may import besides its own and the base
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "discovery": set(),
    "netfilter": set(),  # the readers of netfilter objects, and their codecs
    "sources": set(),  # the kernel's accounting interfaces
    "rules": {"netfilter"},  # the writers: beside the sources, reading through netfilter's readers
    "accounting": set(),
    "wiring": {"discovery", "netfilter", "sources", "rules", "accounting"},
    "exposition": {"discovery"},
    "exporter": {"discovery", "netfilter", "sources", "rules", "accounting", "wiring"},
    "report": set(),
    "cli": {
        "discovery",
        "netfilter",
        "sources",
        "rules",
        "accounting",
        "wiring",
        "exposition",
        "exporter",
        "report",
    },
}


def layer(module: str) -> str:
    """The layer of a module named relative to the package ("rules.ipset", "state", "")."""
    head = module.split(".")[0]
    if head in BASE:
        return "base"
    return {"state": "accounting", "__main__": "cli"}.get(head, head)


def module_of(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(root: Path, module: list[str]) -> bool:
    where = root.joinpath(*module)
    return where.is_dir() or where.with_suffix(".py").exists()


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module relative to the package) of every import of the package's own modules."""
    here = module_of(path, root).split(".") if module_of(path, root) else []
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = package[: len(package) - node.level + 1] + (
                node.module.split(".") if node.module else []
            )
            for alias in node.names:  # "from . import x": x may be a module of its own
                module = [*target, alias.name] if _exists(root, [*target, alias.name]) else target
                found.append((node.lineno, ".".join(module)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{root.name}."):
            found.append((node.lineno, str(node.module)[len(root.name) + 1 :]))
        elif isinstance(node, ast.Import):
            prefix = f"{root.name}."
            found += [(node.lineno, a.name[len(prefix) :]) for a in node.names if a.name.startswith(prefix)]
    return found


def against_the_flow(root: Path = PACKAGE) -> list[str]:
    wrong = []
    for path in sorted(root.rglob("*.py")):
        mine = layer(module_of(path, root))
        for line, target in imports(path, root):
            theirs = layer(target)
            if theirs not in {mine, "base", *ALLOWED[mine]}:
                wrong.append(f"{path.relative_to(root.parent)}:{line}: {mine} imports {target} ({theirs})")
    return wrong


def test_no_import_runs_against_the_flow() -> None:
    assert against_the_flow() == []


def test_the_check_names_each_import_against_the_flow(tmp_path: Path) -> None:
    root = tmp_path / "vz_traffic_exporter"
    files = {
        "__init__.py": "",
        "model.py": "",
        "accounting/__init__.py": "",
        "exporter.py": "",
        "sources/__init__.py": "from ..model import IpReading\n",
        "sources/bad.py": "from . import good\nfrom ..accounting import Accumulator\n",
        "sources/good.py": "",
        "exposition/__init__.py": "",
        "exposition/bad.py": "\nimport vz_traffic_exporter.exporter\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert against_the_flow(root) == [
        "vz_traffic_exporter/exposition/bad.py:2: exposition imports exporter (exporter)",
        "vz_traffic_exporter/sources/bad.py:2: sources imports accounting (accounting)",
    ]


def test_every_layer_of_the_package_is_known() -> None:
    layers = {layer(module_of(path)) for path in PACKAGE.rglob("*.py")}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_no_class_is_a_hub_and_the_exporter_only_orchestrates() -> None:
    big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 250:  # type: ignore[operator]
                big.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert big == []
    assert len((PACKAGE / "exporter.py").read_text().splitlines()) < 200
