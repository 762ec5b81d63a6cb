"""``__all__`` is honest: it names exactly the public names a module defines, and each imports.

Read from the source (not from ``dir()``), so a name imported from elsewhere is not taken for
one the module owns, and a public name added without ``__all__`` is caught.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import pytest

import fetchflow

#: The modules step authors and embedders import (the layers contract's public face).
PUBLIC_MODULES = [
    "fetchflow.errors",
    "fetchflow.field_issues",
    "fetchflow.interrupt",
    "fetchflow.registry",
    "fetchflow.settings",
    "fetchflow.step",
    "fetchflow.storage",
    "fetchflow.template_limits",
    "fetchflow.templating",
    "fetchflow.testing",
]


def defined_names(module_name: str) -> set[str]:
    """The public names bound at the top of a module's source (defs, classes, assignments)."""
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    # Type variables are spelling for signatures, not names to import.
    return {
        name
        for name in names
        if not name.startswith("_") and not isinstance(getattr(module, name, None), TypeVar)
    }


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_names_exactly_what_the_module_defines(module_name: str) -> None:
    module = importlib.import_module(module_name)
    listed = list(module.__all__)

    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert [name for name in listed if not hasattr(module, name)] == [], "listed, not there"
    owned = defined_names(module_name)
    if module_name == "fetchflow.storage":
        owned |= {name for name in listed if hasattr(module, name)}  # a package re-exports
    assert sorted(owned - set(listed)) == [], "public but not in __all__"
    reexported = set(listed) - owned
    for name in reexported:  # a re-export names something public where it comes from
        value = getattr(module, name)
        home = importlib.import_module(getattr(value, "__module__", module_name))
        assert name in getattr(home, "__all__", [name]), f"{name} is private in {home}"


def test_package_all_lists_every_lazy_name_and_each_imports() -> None:
    homes: dict[str, tuple[str, ...]] = fetchflow._HOMES  # type: ignore[attr-defined]
    lazy = {name for names in homes.values() for name in names}

    assert sorted(fetchflow.__all__) == fetchflow.__all__
    assert set(fetchflow.__all__) == lazy | {"__version__"}
    for module_name, names in homes.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert name in module.__all__, f"{name} is not public in {module_name}"
            assert getattr(fetchflow, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'fetchflow' has no attribute 'Stepp'"):
        fetchflow.Stepp  # type: ignore[attr-defined]  # noqa: B018


def test_star_import_gives_every_public_name_without_prefect() -> None:
    code = (
        "import sys\n"
        "from fetchflow import *\n"
        "import fetchflow\n"
        "missing = [n for n in fetchflow.__all__ if n not in globals()]\n"
        "assert not missing, missing\n"
        "assert 'prefect' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr


def test_every_exception_class_is_drawn_in_the_error_tree() -> None:
    """fetchflow.errors draws the whole tree, the step library's exceptions included."""
    import fetchflow.errors

    found: set[str] = set()
    for package in ("fetchflow", "steps"):
        root = Path(importlib.import_module(package).__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            if path.name == "__main__.py":
                continue  # runs the command line when imported
            parts = path.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            module = importlib.import_module(name)
            found.update(
                value.__name__
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
            )
    drawing = fetchflow.errors.__doc__ or ""

    assert sorted(name for name in found if f" {name} " not in drawing.replace("*", " ")) == []
