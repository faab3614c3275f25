"""The emulator is written from the protocol reference, not from the client: it must share no code with it."""

from __future__ import annotations

import ast
from pathlib import Path

import aca_kernel.emulator

EMULATOR_DIR = Path(aca_kernel.emulator.__file__).parent


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, relative level) of every import statement in ``path``, wherever it stands."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_the_emulator_imports_nothing_of_aca_kernel_outside_itself():
    files = sorted(EMULATOR_DIR.rglob("*.py"))
    assert len(files) > 5
    offending = []
    for path in files:
        for module, level in _imports(path):
            leaves_package = level >= 2  # "from .. import x" reaches aca_kernel
            absolute_client = level == 0 and (module == "aca_kernel" or (
                module.startswith("aca_kernel.") and not module.startswith("aca_kernel.emulator")))
            if leaves_package or absolute_client:
                offending.append(f"{path.name}: {'.' * level}{module}")
    assert offending == []


def test_the_check_catches_a_client_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from .._validation import x\n    import aca_kernel._base\n")
    assert _imports(bad) == [("_validation", 2), ("aca_kernel._base", 0)]
