"""The step registry: step types by name, loaded from the ``fetchflow.steps`` entry points.

Entry points of installed distributions are read fast:

``importlib.metadata.entry_points`` parses the metadata of every installed distribution
(hundreds, next to Prefect) and costs ~50 ms before the first step type is known; this
reads only the ``entry_points.txt`` files of the ``*.dist-info`` / ``*.egg-info`` folders
on ``sys.path`` (~3 ms) and gives the same entry points for a group. A test keeps the two
in agreement.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchflow.errors import PluginError
from fetchflow.step import Step, definition_problem

__all__ = ["ENTRY_POINT_GROUP", "EntryPoint", "StepRegistry", "entry_points"]

ENTRY_POINT_GROUP = "fetchflow.steps"


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = module:attr`` line of a group, and the distribution it came from."""

    name: str
    value: str
    dist: str

    def load(self) -> object:
        """Import the module and return the named object."""
        module_name, _, attrs = self.value.partition(":")
        target: object = importlib.import_module(module_name.strip())
        for attr in filter(None, attrs.strip().split(".")):
            target = getattr(target, attr)
        return target


def _dist_name(folder: str) -> str:
    stem = folder.rsplit(".", 1)[0]
    return stem.split("-", 1)[0]


def _group_lines(text: str, group: str) -> Iterable[tuple[str, str]]:
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # drop [extras]
            yield name.strip(), value


def entry_points(group: str, paths: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group`` in the distributions found on ``paths`` (sys.path).

    A distribution found twice (an editable install's ``.egg-info`` next to its
    ``.dist-info``) gives its entry points once.
    """
    marker = f"[{group}]"
    found: list[EntryPoint] = []
    seen: set[tuple[str, str, str]] = set()
    for path in sys.path if paths is None else paths:
        try:
            entries = os.scandir(path or ".")
        except OSError:
            continue
        with entries:
            folders = sorted(
                entry.path
                for entry in entries
                if entry.name.endswith((".dist-info", ".egg-info")) and entry.is_dir()
            )
        for folder in folders:
            try:
                text = (Path(folder) / "entry_points.txt").read_text(encoding="utf-8")
            except OSError:
                continue
            if marker not in text:
                continue
            dist = _dist_name(Path(folder).name)
            for name, value in _group_lines(text, group):
                key = (name, value, dist.lower().replace("_", "-"))
                if key not in seen:
                    seen.add(key)
                    found.append(EntryPoint(name, value, dist))
    return found


class StepRegistry:
    """Step types by name.

    Args:
        steps: ``{type name: Step subclass}``.
    """

    def __init__(self, steps: Mapping[str, type[Step[Any, Any]]]) -> None:
        self._steps = dict(sorted(steps.items()))

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> StepRegistry:
        """Load every step type registered in the entry-point group.

        Raises:
            PluginError: Two distributions register the same type name, an entry point
                cannot be imported, it does not name a ``Step`` subclass, or the class is
                not a usable step (see :func:`fetchflow.step.definition_problem`).
        """
        found: dict[str, tuple[str, type[Step[Any, Any]]]] = {}
        for point in entry_points(group=group):
            dist = point.dist
            if point.name in found:
                other_dist, other_cls = found[point.name]
                if f"{other_cls.__module__}:{other_cls.__qualname__}" == point.value:
                    continue  # the same distribution seen twice on sys.path
                raise PluginError(
                    f'step type "{point.name}" is registered twice: by {other_dist} '
                    f"({other_cls.__module__}:{other_cls.__qualname__}) and by {dist} "
                    f"({point.value})",
                    f'uninstall one of them or rename its entry point in the "{group}" group',
                )
            try:
                loaded = point.load()
            except Exception as error:
                raise PluginError(
                    f'step type "{point.name}" from {dist} cannot be loaded ({point.value}): '
                    f"{type(error).__name__}: {error}",
                    f"reinstall {dist}, or uninstall it if it is not needed",
                ) from error
            if not (isinstance(loaded, type) and issubclass(loaded, Step)):
                raise PluginError(
                    f'step type "{point.name}" from {dist} points at {point.value}, which is '
                    "not a fetchflow Step subclass",
                    "the entry point must name a class derived from fetchflow.Step",
                )
            problem = definition_problem(loaded)
            if problem is not None:
                message, hint = problem
                raise PluginError(
                    f'step type "{point.name}" from {dist} ({point.value}): {message}', hint
                )
            found[point.name] = (dist, loaded)
        return cls({name: step for name, (_, step) in found.items()})

    def get(self, name: str) -> type[Step[Any, Any]] | None:
        """The step type called ``name``, or None."""
        return self._steps.get(name)

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return list(self._steps)

    def items(self) -> list[tuple[str, type[Step[Any, Any]]]]:
        """``(name, class)`` pairs, sorted by name."""
        return list(self._steps.items())
