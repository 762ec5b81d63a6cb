"""Entry points of installed distributions, read fast.

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EntryPoint", "entry_points"]


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
