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


# ----- the toolkit's own rule: the engine never reaches for the command line -----

MIGRATOR = TESTS.parent / "migrator"
CLI_SIDE = ("migrator.cli", "migrator.flags", "migrator.output", "migrator.commands")


def cli_side(module: str) -> bool:
    return any(module == side or module.startswith(side + ".") for side in CLI_SIDE)


def module_name(path: Path) -> str:
    parts = path.relative_to(MIGRATOR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[str]:
    """Every module a file imports (`from migrator import output` counts as migrator.output)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def prints(path: Path) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))


def test_the_engine_side_never_imports_the_cli_side_nor_prints():
    engine_side = [path for path in sorted(MIGRATOR.rglob("*.py")) if not cli_side(module_name(path))]
    assert len(engine_side) > 20  # the rule reads the real tree
    offenders = {module_name(path): found for path in engine_side
                 if (found := sorted({name for name in imports_of(path) if cli_side(name)}))}
    assert offenders == {}, ("the engine side (all of migrator/ but cli.py, flags.py, output.py and commands/) "
                             "reports events (migrator.events) and never imports the command line's modules")
    assert [module_name(path) for path in engine_side if prints(path)] == []


def test_the_engine_is_composed_of_its_steps_not_one_of_them():
    from migrator.engine import Engine
    from migrator.steps import Steps

    assert not issubclass(Engine, Steps)
