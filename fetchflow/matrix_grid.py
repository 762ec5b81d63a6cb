"""The grid of a step's images: rows, columns and cells, read from the records alone.

A step with ``matrix:`` outputs one record per image, each with its combination's axis
values (``AssetRecord.matrix``). :func:`plan_grid` lays them out for a contact sheet (the
image steps' ``contact_sheet: true``) and for the Output artifact in the Prefect UI, the
same way for both:

- **2 axes**: rows are the first axis's values, columns the second's; the corner names
  both (``product \\ style``).
- **1 axis**: one row, a column per value.
- **3+ axes**: a row per combination of all but the last axis (``a=x, b=y``), a column per
  value of the last.
- **Paired axes** (``matrix_mode: zip``: each value of one axis meets one value of the
  other): one row, a column per pair (``a=x, b=y``).
- **No matrix** (``count > 1``, several references): the images side by side, numbered
  ``1..n``, :data:`UNNUMBERED_PER_ROW` to a row.

Values are ordered as they first appear (the engine's stable combination order), so the
rows and columns follow the axes as written. A combination that made several images
(``count > 1`` inside a matrix) has them side by side in its cell; a combination that made
none (it failed or was skipped, and another combination shows its row and column) is an
empty cell. Grids are bounded (:data:`MAX_ROWS`, :data:`MAX_CELL_IMAGES` thumbnails to a
row): what does not fit is counted in :attr:`Grid.left_out`.

A record whose provenance ``kind`` is :data:`CONTACT_SHEET_KIND` shows other records (a
contact sheet): it is no cell of the grid. Pure: no Pillow, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CONTACT_SHEET_KIND",
    "MAX_CELL_IMAGES",
    "MAX_ROWS",
    "UNNUMBERED_PER_ROW",
    "Grid",
    "is_contact_sheet",
    "plan_grid",
    "record_name",
    "value_text",
]

#: ``provenance["kind"]`` of a record that is a contact sheet of the step's other records.
CONTACT_SHEET_KIND = "contact_sheet"
#: Most rows a grid shows.
MAX_ROWS = 12
#: Most thumbnails a grid row shows (columns x images per cell).
MAX_CELL_IMAGES = 12
#: Most images of one combination shown side by side in its cell.
MAX_PER_CELL = 4
#: Images to a row when there is no matrix (numbered 1..n).
UNNUMBERED_PER_ROW = 10


@dataclass(frozen=True)
class Grid:
    """Where each image goes: labelled rows and columns, each cell a few item indexes.

    Attributes:
        corner: The top-left header: the axis names (``product \\ style``), or ``#``.
        row_labels: One label per row (``mug``, ``a=x, b=y``; empty for a single row).
        column_labels: One label per column (``watercolor``, ``1``).
        cells: ``cells[row][column]``: indexes into the items given to :func:`plan_grid`,
            in order; empty where that combination made nothing.
        per_cell: How many images a cell holds side by side (at least 1).
        left_out: Items not placed (over the bounds), to be said next to the grid.
    """

    corner: str
    row_labels: tuple[str, ...]
    column_labels: tuple[str, ...]
    cells: tuple[tuple[tuple[int, ...], ...], ...]
    per_cell: int
    left_out: int

    @property
    def shown(self) -> int:
        """How many items the grid places."""
        return sum(len(cell) for row in self.cells for cell in row)


def is_contact_sheet(record: Mapping[str, object]) -> bool:
    """Whether ``record`` is a contact sheet (a picture of other records, not one of them)."""
    provenance = record.get("provenance")
    return isinstance(provenance, Mapping) and provenance.get("kind") == CONTACT_SHEET_KIND


def record_name(value: object) -> str | None:
    """The file name of an asset record used as an axis value (``img: << base.output >>``),
    which says which file it is where its JSON (links, hashes, times) would not; else None."""
    if isinstance(value, Mapping) and isinstance(value.get("sha256"), str):
        name = value.get("file_name")
        return name if isinstance(name, str) and name else None
    return None


def value_text(value: object) -> str:
    """An axis value as a label: text as is, an asset record by its file name, anything
    else as compact JSON."""
    if isinstance(value, str):
        return value
    name = record_name(value)
    if name is not None:
        return name
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _pairs(axes: Sequence[str], values: Mapping[str, object]) -> str:
    return ", ".join(f"{axis}={value_text(values.get(axis))}" for axis in axes)


def _first_seen(keys: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def plan_grid(
    matrices: Sequence[Mapping[str, object]],
    combinations: Sequence[Mapping[str, object]] = (),
) -> Grid:
    """Lay out items by their axis values (one mapping per item, empty without a matrix).

    Args:
        matrices: Each item's combination (``AssetRecord.matrix``), in output order.
        combinations: Every combination of the matrix, in order, when known: a value
            whose combinations all made nothing still has its row or column (empty cells).

    Returns:
        The grid; items beyond its bounds are counted in ``left_out``.
    """
    every = [*combinations, *matrices]
    axes = _first_seen([axis for values in every for axis in values])
    if not axes:
        return _unnumbered(len(matrices))
    row_axes: tuple[str, ...] = ()
    if len(axes) == 1:
        row_keys = ["" for _ in every]
        corner = axes[0]
    else:
        row_axes = tuple(axes[:-1])
        row_keys = [
            value_text(values.get(axes[0])) if len(axes) == 2 else _pairs(row_axes, values)
            for values in every
        ]
        corner = f"{', '.join(row_axes)} \\ {axes[-1]}"
    column_keys = [value_text(values.get(axes[-1])) for values in every]
    if row_axes and _paired(row_keys, column_keys):
        row_keys = ["" for _ in every]
        column_keys = [_pairs(axes, values) for values in every]
        corner = " + ".join(axes)
    # The combinations only order the rows and columns; the items are what is placed.
    known = len(combinations)
    return _place(
        corner, row_keys[known:], column_keys[known:], row_keys[:known], column_keys[:known]
    )


def _paired(row_keys: Sequence[str], column_keys: Sequence[str]) -> bool:
    """Each row value meets one column value and the reverse, more than once (zip mode):
    a grid would be mostly empty."""
    combos = set(zip(row_keys, column_keys, strict=True))
    rows, columns = set(row_keys), set(column_keys)
    return len(combos) > 1 and len(combos) == len(rows) == len(columns)


def _place(
    corner: str,
    row_keys: Sequence[str],
    column_keys: Sequence[str],
    every_row: Sequence[str] = (),
    every_column: Sequence[str] = (),
) -> Grid:
    rows = _first_seen([*every_row, *row_keys])
    columns = _first_seen([*every_column, *column_keys])
    found: dict[tuple[str, str], list[int]] = {}
    for index, key in enumerate(zip(row_keys, column_keys, strict=True)):
        found.setdefault(key, []).append(index)
    per_cell = min(MAX_PER_CELL, max((len(items) for items in found.values()), default=1))
    shown_rows = rows[:MAX_ROWS]
    shown_columns = columns[: max(1, MAX_CELL_IMAGES // per_cell)]
    cells = tuple(
        tuple(tuple(found.get((row, column), [])[:per_cell]) for column in shown_columns)
        for row in shown_rows
    )
    shown = sum(len(cell) for row in cells for cell in row)
    return Grid(
        corner, tuple(shown_rows), tuple(shown_columns), cells, per_cell, len(row_keys) - shown
    )


def _unnumbered(total: int) -> Grid:
    """``total`` items numbered 1..n, :data:`UNNUMBERED_PER_ROW` to a row."""
    width = max(1, min(total, UNNUMBERED_PER_ROW))
    starts = list(range(0, total, width))[:MAX_ROWS]
    cells = tuple(
        tuple((start + column,) if start + column < total else () for column in range(width))
        for start in starts
    )
    # Several rows: each row says which images it holds; the columns count within it.
    row_labels = tuple(
        "" if len(starts) == 1 else f"{start + 1}–{min(start + width, total)}" for start in starts
    )
    column_labels = tuple(str(number) for number in range(1, width + 1))
    shown = sum(len(cell) for row in cells for cell in row)
    return Grid("#", row_labels, column_labels, cells, 1, total - shown)
