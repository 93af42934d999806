"""science/ imports nothing from the rest of cryovault (DESIGN.md)."""

import ast
from pathlib import Path

import cryovault.science

SCIENCE = Path(cryovault.science.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_science_imports_only_itself_from_cryovault():
    files = sorted(SCIENCE.glob("*.py"))
    assert len(files) >= 7
    offenders = {
        f.name: sorted(n for n in imported_modules(f)
                       if n.split(".")[0] == "cryovault" and not n.startswith("cryovault.science"))
        for f in files
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_science_does_not_require_torch():
    for f in SCIENCE.glob("*.py"):
        assert not any(n.split(".")[0] == "torch" for n in imported_modules(f)), f.name
