"""The test suite's own rule: a test module imports no other test module (shared helpers live in
tests/conftest.py), so that moving or deleting one test file cannot break another."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_test_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [name for name in names if name.split(".")[-1].startswith("test_")]
    return found


def test_no_test_module_imports_another():
    offenders = {str(path.relative_to(TESTS)): imported for path in sorted(TESTS.rglob("test_*.py"))
                 if (imported := imported_test_modules(path))}
    assert offenders == {}, "move the shared helpers into tests/conftest.py"


# ----- the toolkit's own rule: every module fits on a few screens -----

MIGRATOR = TESTS.parent / "migrator"
MAX_LINES = 350


def test_no_migrator_module_is_over_350_lines():
    over = {str(path.relative_to(MIGRATOR)): lines for path in sorted(MIGRATOR.rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert over == {}, f"split these modules (at most {MAX_LINES} lines each)"
