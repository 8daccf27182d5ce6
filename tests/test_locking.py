"""Row locks are taken only through the named helpers of the locking modules, which state the
lock order (``ledger/locking.py``): no ``select_for_update`` and no raw ``FOR UPDATE`` /
``FOR SHARE`` SQL anywhere else in the production code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "config",
    "common",
    "settlement",
    "netting",
    "reconciliation",
    "rails",
    "calendars",
    "ledger",
    "ops",
    "reference",
)
LOCKING_MODULES = {
    "ledger/locking.py",
    "settlement/locking.py",
    "netting/locking.py",
    "ops/locking.py",
    "reconciliation/locking.py",
}
# Still to move onto the helpers: empty, and it stays so.
NOT_YET: tuple[str, ...] = ()
NOT_YET_COUNTS: dict[str, int] = {}
RAW_LOCK = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _locks_in(path: Path) -> list[int]:
    """Line numbers of ``select_for_update`` uses and of SQL string literals that lock rows."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = _docstrings(tree)
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "select_for_update") or (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and RAW_LOCK.search(node.value)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _production_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        base = ROOT / package
        if base.is_dir():
            files += [p for p in base.rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def test_row_locks_only_in_locking_modules():
    found: dict[str, list[int]] = {}
    for path in _production_files():
        name = path.relative_to(ROOT).as_posix()
        if name in LOCKING_MODULES or name.startswith(NOT_YET):
            continue
        lines = _locks_in(path)
        if len(lines) > NOT_YET_COUNTS.get(name, 0):
            found[name] = lines
    assert found == {}, f"row locks outside the locking modules (use or add a helper there): {found}"


def test_the_check_sees_a_lock(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say FOR UPDATE."""\n'
        "def f(m, cursor):\n"
        '    """Nor here: FOR SHARE."""\n'
        "    m.objects.select_for_update().get(pk=1)\n"
        '    cursor.execute("SELECT 1 FROM t WHERE id = %s FOR NO KEY UPDATE")\n'
    )
    assert _locks_in(sample) == [4, 5]


def test_the_locking_modules_exist_and_state_the_order():
    for name in LOCKING_MODULES:
        source = (ROOT / name).read_text()
        assert "lock order" in ast.get_docstring(ast.parse(source)).lower(), name
