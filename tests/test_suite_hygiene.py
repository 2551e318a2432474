"""The test suite's own layout: shared helpers live in tests/support/, fixtures in conftest.py,
and no test module imports another (a test module is something pytest runs, not a library)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# No server: this reads the suite's source files.
pytestmark = pytest.mark.pure


def _sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_no_module_imports_a_test_module_or_conftest() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{line} imports {module}"
        for path in _sources()
        for line, module in _imported_modules(path)
        if module.startswith("test_") or module == "conftest"
    ]
    assert not offenders, "shared helpers belong in tests/support/: " + "; ".join(offenders)


def test_no_import_of_a_test_module_in_any_spelling() -> None:
    """The plain-text form of the rule, for imports the parser would not see (exec, strings
    handed to a subprocess)."""
    offenders = []
    for path in _sources():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            for keyword in ("from", "import"):
                if keyword in words[:-1]:
                    name = words[words.index(keyword) + 1]
                    if name.startswith(("test_", "conftest")):
                        offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_every_test_module_holds_tests_and_support_holds_none() -> None:
    helper_only = []
    tests_in_support = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        tests = [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
            and node.name.lower().startswith("test")
        ]
        if path.parent == TESTS and path.name.startswith("test_") and not tests:
            helper_only.append(path.name)
        if "support" in path.relative_to(TESTS).parts and tests:
            tests_in_support.append(f"{path.relative_to(TESTS)}: {tests}")
    assert not helper_only, f"test modules without tests (helpers go in support/): {helper_only}"
    assert not tests_in_support, tests_in_support


def test_support_is_the_package_the_tests_import() -> None:
    import support

    assert Path(support.__file__).resolve().parent == TESTS / "support"
