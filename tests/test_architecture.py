"""The import rules of orchard's layout, checked on the source with `ast` (nothing is imported):

- pipeline/ imports nothing from orchard.local, orchard.cloud, orchard.analysis;
- storage/ does not import orchard.local (endpoints are passed in);
- table/ (the output's Delta tables) imports nothing from local, cloud, analysis or commands;
- orchard's own modules are imported at module level, never inside a function (third-party
  ones may be deferred); an `if TYPE_CHECKING:` block counts as module level. The one exception
  is an orchard module that is itself heavy: one that imports pyspark, matplotlib, boto3,
  onnxruntime, pandas, pyarrow or Pillow at module level, directly or through the orchard
  modules it imports (e.g. orchard.pipeline.featurize, whose Transformer subclasses pyspark.ml's,
  or orchard.api, through the listing's pyarrow and the decoder's Pillow): deferring it keeps
  the CLI's start free of them, like deferring pyspark itself;
- every imported module exists: orchard's own as a file of the tree (and every name taken from
  one is defined there), third-party ones as an installed package (unless the import is
  optional: inside `try: ... except ImportError`).
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, List, Optional, Set

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "orchard"

# package folder -> orchard packages it must not import
FORBIDDEN = {
    "pipeline": ("orchard.local", "orchard.cloud", "orchard.analysis"),
    "storage": ("orchard.local",),
    "table": ("orchard.local", "orchard.cloud", "orchard.analysis", "orchard.commands"),
}
# third-party packages worth deferring (hundreds of ms to import)
HEAVY_PACKAGES = ("pyspark", "matplotlib", "boto3", "botocore", "onnxruntime", "pandas", "pyarrow", "PIL")
# (file, imported module) pairs allowed inside a function, with the reason
DEFERRED_ALLOWED = {
    # run as a script by spark-submit: it imports orchard only after taking its own folder off sys.path
    ("spark/entry.py", "orchard.cli"),
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to src/orchard
    line: int
    module: str  # absolute module name
    names: tuple  # the names of `from module import names` (empty for `import module`)
    in_function: bool
    optional: bool  # inside `try: ... except ImportError`

    def __str__(self) -> str:
        what = f"from {self.module} import {', '.join(self.names)}" if self.names else f"import {self.module}"
        return f"{self.file}:{self.line}: {what}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, source: Optional[str] = None) -> Iterator[Import]:
    """Every import statement of the file at `path` (or of `source`, as if it were that file)."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    relative = path.relative_to(PACKAGE).as_posix()

    def walk(node: ast.AST, in_function: bool, optional: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(relative, child.lineno, alias.name, (), in_function, optional)
            elif isinstance(child, ast.ImportFrom):
                names = tuple(alias.name for alias in child.names)
                yield Import(relative, child.lineno, _absolute(child, path), names, in_function, optional)
            elif isinstance(child, ast.If) and not in_function and _is_type_checking(child):
                continue  # typing-only imports: module level, never run
            else:
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(child, inner, optional or _catches_import_error(child))

    yield from walk(tree, False, False)


def _catches_import_error(node: ast.AST) -> bool:
    if not isinstance(node, ast.Try):
        return False
    caught = [n.id for h in node.handlers if h.type is not None for n in ast.walk(h.type) if isinstance(n, ast.Name)]
    return any(name in ("ImportError", "ModuleNotFoundError") for name in caught)


def all_imports() -> List[Import]:
    return [found for path in sorted(PACKAGE.rglob("*.py")) for found in imports_of(path)]


def _module_file(module: str) -> Optional[Path]:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _defined_names(module: str) -> Set[str]:
    """Names bound at the top level of an orchard module (including under if/try at top level)."""
    path = _module_file(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: Set[str] = set()

    def visit(body) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body)
                for extra in ("orelse", "finalbody"):
                    visit(getattr(node, extra, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def _missing(found: Import) -> Optional[str]:
    """Why this import would fail, or None."""
    if found.module == "orchard" or found.module.startswith("orchard."):
        if _module_file(found.module) is None:
            return f"no module {found.module}"
        for name in found.names:
            if name != "*" and _module_file(f"{found.module}.{name}") is None \
                    and name not in _defined_names(found.module):
                return f"{found.module} has no {name}"
        return None
    top = found.module.split(".")[0]
    if found.optional or top == "__future__" or top in sys.builtin_module_names:
        return None
    if importlib.util.find_spec(top) is None:
        return f"no installed module {top}"
    return None


@lru_cache(maxsize=None)
def is_heavy(module: str) -> bool:
    """True when importing orchard `module` imports a HEAVY_PACKAGES package (module-level
    imports only, followed through orchard's own modules)."""
    path = _module_file(module)
    if path is None:
        return False
    for found in imports_of(path):
        if found.in_function or found.optional:
            continue
        if found.module.split(".")[0] in HEAVY_PACKAGES:
            return True
        if found.module.startswith("orchard.") and found.module != module:
            targets = [found.module] + [f"{found.module}.{name}" for name in found.names
                                        if _module_file(f"{found.module}.{name}") is not None]
            if any(is_heavy(target) for target in targets):
                return True
    return False


def _report(violations: List[str]) -> str:
    return "\n" + "\n".join(violations)


def test_the_walk_sees_every_import_kind():
    """The rules below rest on this walk: it finds module-level, function-level and relative imports
    and skips TYPE_CHECKING blocks."""
    source = ("from typing import TYPE_CHECKING\nimport os\nfrom . import load\n"
              "if TYPE_CHECKING:\n    from orchard.cloud import api\n"
              "def f():\n    from orchard.local import cluster\n    return cluster\n"
              "try:\n    import zstandard\nexcept ImportError:\n    zstandard = None\n")
    found = list(imports_of(PACKAGE / "pipeline" / "probe.py", source))
    assert [(i.module, i.in_function, i.optional) for i in found] == [
        ("typing", False, False), ("os", False, False), ("orchard.pipeline", False, False),
        ("orchard.local", True, False), ("zstandard", False, True)]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_forbidden_imports_between_systems(folder):
    banned = FORBIDDEN[folder]
    violations = [str(i) for i in all_imports()
                  if i.file.startswith(folder + "/")
                  and any(i.module == b or i.module.startswith(b + ".") for b in banned)]
    assert not violations, f"{folder}/ must not import {', '.join(banned)}:" + _report(violations)


def test_orchard_modules_are_imported_at_module_level():
    violations = [str(i) for i in all_imports()
                  if i.in_function and (i.module == "orchard" or i.module.startswith("orchard."))
                  and (i.file, i.module) not in DEFERRED_ALLOWED
                  and not any(is_heavy(target) for target in
                              [i.module] + [f"{i.module}.{name}" for name in i.names])]
    assert not violations, "orchard imports inside a function (move them to the top):" + _report(violations)


def test_heavy_orchard_modules_are_found_through_their_imports():
    assert is_heavy("orchard.pipeline.featurize")  # subclasses pyspark.ml's Transformer
    assert is_heavy("orchard.api")  # through orchard.pipeline.run (Pillow and pyarrow, for listing and decoding)
    assert is_heavy("orchard.pipeline.quantize")  # pandas, through the worker's inference module
    assert not is_heavy("orchard.names") and not is_heavy("orchard.errors")
    assert not is_heavy("orchard.cli")  # the CLI starts without pyspark


def test_every_imported_module_exists():
    violations = [f"{i}: {reason}" for i in all_imports() for reason in [_missing(i)] if reason]
    assert not violations, "imports that cannot succeed:" + _report(violations)


def test_a_missing_module_or_name_is_caught():
    def probe(module, names=()):
        return _missing(Import("probe.py", 1, module, tuple(names), False, False))

    assert probe("orchard.no_such_module") == "no module orchard.no_such_module"
    assert probe("orchard.names", ["NO_SUCH_NAME"]) == "orchard.names has no NO_SUCH_NAME"
    assert probe("no_such_package_xyz") == "no installed module no_such_package_xyz"
    assert probe("orchard.names", ["STAGES"]) is None and probe("orchard.local", ["cluster"]) is None
    assert probe("json") is None
