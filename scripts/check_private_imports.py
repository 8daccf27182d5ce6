"""No module uses another top-level package's private names.

A name (function, class, constant or module) whose last segment starts with one underscore is
private to its top-level package of the project (``settlement``, ``netting``, ``common``...): a module of another
package may not import it (``from settlement.services.trades import _helper``, ``import
netting._x``) nor reach it through a module it imported (``trades._helper``, ``settlement.x._y``).
Dunder names (``__version__``) are not private. Relative imports stay inside their package.

Usage: ``python scripts/check_private_imports.py [PATH ...]`` (default: the project's packages);
prints one line per use and exits 1 if there is any. ``make typecheck`` runs it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "config",
    "ops",
    "reconciliation",
    "netting",
    "settlement",
    "ledger",
    "reference",
    "rails",
    "common",
    "calendars",
)


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: uses {self.name}, private to package {self.name.split('.')[0]}"


def is_private(segment: str) -> bool:
    return segment.startswith("_") and not (segment.startswith("__") and segment.endswith("__"))


def private_use(dotted: str, importer_top: str) -> bool:
    """True if ``dotted`` names something private of one of the project's packages other than the
    importer's (the standard library's and third parties' names are theirs to judge)."""
    parts = dotted.split(".")
    return parts[0] in PACKAGES and parts[0] != importer_top and any(is_private(part) for part in parts[1:])


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def dotted_of(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"] (None for anything but a chain of names)."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(attrs)]


def source_violations(source: str, *, module: str, path: str, is_module: object = None) -> Iterator[Violation]:
    """The private uses in one module's source. ``is_module(dotted)`` says whether a name imported
    with ``from x import y`` is a module (so ``y._z`` is reached through it); default: never."""
    top = module.split(".")[0]
    tree = ast.parse(source, filename=path)
    aliases: dict[str, str] = {}  # local name -> the module it is bound to
    check = is_module if callable(is_module) else (lambda dotted: False)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if private_use(alias.name, top):
                    yield Violation(path, node.lineno, alias.name)
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    first = alias.name.split(".")[0]
                    aliases[first] = first
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if private_use(dotted, top):
                    yield Violation(path, node.lineno, dotted)
                if check(dotted):
                    aliases[alias.asname or alias.name] = dotted
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            chain = dotted_of(node)
            if chain is None or chain[0] not in aliases:
                continue
            dotted = ".".join([aliases[chain[0]], *chain[1:]])
            # report the attribute that is private itself, once (not every longer chain over it)
            if is_private(chain[-1]) and private_use(dotted, top):
                yield Violation(path, node.lineno, dotted)


def project_violations(root: Path = ROOT, paths: list[Path] | None = None) -> list[Violation]:
    def is_module(dotted: str) -> bool:
        base = root.joinpath(*dotted.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    files: list[Path] = []
    for target in paths or [root / package for package in PACKAGES]:
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    found: list[Violation] = []
    for file in files:
        rel = str(file.relative_to(root))
        source = file.read_text(encoding="utf-8")
        found.extend(source_violations(source, module=module_name(file, root), path=rel, is_module=is_module))
    return found


def main(argv: list[str]) -> int:
    paths = [Path(arg).resolve() for arg in argv] or None
    found = project_violations(ROOT, paths)
    for violation in found:
        print(violation)
    if found:
        print(f"{len(found)} use(s) of another package's private names", file=sys.stderr)
        return 1
    print("private imports: none across packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
