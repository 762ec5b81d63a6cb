"""Contact sheets: a step's images as one labelled grid picture (PNG).

:func:`draw_contact_sheet` draws the layout :func:`fetchflow.matrix_grid.plan_grid` chose
(the same one the Prefect UI shows): a title line, the column labels above the cells, the
row labels to their left, the axis names in the corner, each image fitted into a
``cell_px`` square (a combination with several images has them side by side). A
combination that made nothing is an empty cell marked "no image"; bytes that cannot be
decoded are an empty cell marked "unreadable". Text is Pillow's built-in font (no font
file), cut with "…" where it would not fit. Same inputs, same PNG bytes (for one Pillow
version); the size is bounded by the grid's own bounds (at most about 3,400 px a side at
the default cell size).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from fetchflow.matrix_grid import Grid

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

__all__ = ["CELL_PX", "SheetLayout", "draw_contact_sheet", "sheet_layout"]

#: The side of the square each image is fitted into.
CELL_PX = 256
MARGIN = 16
GAP = 8
LABEL_PX = 14
TITLE_PX = 18
HEADER_HEIGHT = 28
TITLE_HEIGHT = 32
#: The row-label column's width bounds.
MIN_LABEL_WIDTH, MAX_LABEL_WIDTH = 48, 320
BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (236, 236, 236)
EMPTY_BACKGROUND = (248, 248, 248)
EMPTY_OUTLINE = (190, 190, 190)
INK = (34, 34, 34)
MUTED = (120, 120, 120)
NO_IMAGE = "no image"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class SheetLayout:
    """Where things go on a sheet (pixels).

    Attributes:
        size: ``(width, height)`` of the whole sheet.
        label_width: Width of the row-label column.
        cell_size: ``(width, height)`` of one cell (``per_cell`` squares side by side).
        cells: ``cells[row][column]``: the ``(left, top)`` of each cell.
    """

    size: tuple[int, int]
    label_width: int
    cell_size: tuple[int, int]
    cells: tuple[tuple[tuple[int, int], ...], ...]


@cache
def _font(size: int) -> FreeTypeFont | ImageFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _text_width(text: str, size: int) -> int:
    left, _, right, _ = _font(size).getbbox(text)
    return int(right - left)


def _fit(text: str, width: int, size: int) -> str:
    """``text`` cut with "…" to fit ``width`` pixels."""
    if _text_width(text, size) <= width:
        return text
    while text and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def sheet_layout(grid: Grid, cell_px: int = CELL_PX) -> SheetLayout:
    """The sheet's size and each cell's position, from the grid's labels and shape."""
    labels = [grid.corner, *grid.row_labels]
    widest = max((_text_width(label, LABEL_PX) for label in labels), default=0)
    label_width = min(MAX_LABEL_WIDTH, max(MIN_LABEL_WIDTH, widest + 2 * GAP))
    cell_width = grid.per_cell * cell_px + (grid.per_cell - 1) * GAP
    left0 = MARGIN + label_width + GAP
    top0 = MARGIN + TITLE_HEIGHT + HEADER_HEIGHT
    cells = tuple(
        tuple(
            (left0 + column * (cell_width + GAP), top0 + row * (cell_px + GAP))
            for column in range(len(grid.column_labels))
        )
        for row in range(len(grid.row_labels))
    )
    width = left0 + len(grid.column_labels) * (cell_width + GAP) - GAP + MARGIN
    height = top0 + len(grid.row_labels) * (cell_px + GAP) - GAP + MARGIN
    return SheetLayout((width, height), label_width, (cell_width, cell_px), cells)


def draw_contact_sheet(
    grid: Grid, images: Sequence[bytes], *, title: str, cell_px: int = CELL_PX
) -> bytes:
    """The contact sheet of ``images`` laid out as ``grid``, as PNG bytes.

    Args:
        grid: The layout (:func:`fetchflow.matrix_grid.plan_grid` of the images' records).
        images: The images' bytes, indexed as the grid's cells index them.
        title: The first line (the step, what it shows); "N more not shown" is added when
            the grid left some out.
        cell_px: The side of the square each image is fitted into.
    """
    from PIL import Image, ImageDraw

    layout = sheet_layout(grid, cell_px)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    heading = title + (f" ({grid.left_out} more not shown)" if grid.left_out else "")
    draw.text(
        (MARGIN, MARGIN),
        _fit(heading, layout.size[0] - 2 * MARGIN, TITLE_PX),
        fill=INK,
        font=_font(TITLE_PX),
    )
    header_top = MARGIN + TITLE_HEIGHT
    label_left = MARGIN
    draw.text(
        (label_left, header_top + 4),
        _fit(grid.corner, layout.label_width - GAP, LABEL_PX),
        fill=MUTED,
        font=_font(LABEL_PX),
    )
    cell_width, cell_height = layout.cell_size
    for column, label in enumerate(grid.column_labels):
        left = layout.cells[0][column][0] if layout.cells else 0
        _centred(draw, label, left, header_top + 4, cell_width)
    for row, label in enumerate(grid.row_labels):
        top = layout.cells[row][0][1] if layout.cells[row] else 0
        fitted = _fit(label, layout.label_width - GAP, LABEL_PX)
        draw.text(
            (label_left, top + cell_height // 2 - LABEL_PX // 2),
            fitted,
            fill=INK,
            font=_font(LABEL_PX),
        )
        for column, items in enumerate(grid.cells[row]):
            left, top = layout.cells[row][column]
            if not items:
                _empty(draw, (left, top, left + cell_width - 1, top + cell_height - 1), NO_IMAGE)
                continue
            for slot, index in enumerate(items):
                box_left = left + slot * (cell_px + GAP)
                box = (box_left, top, box_left + cell_px - 1, top + cell_px - 1)
                picture = _thumbnail(images[index], cell_px)
                if picture is None:
                    _empty(draw, box, UNREADABLE)
                    continue
                draw.rectangle(box, fill=CELL_BACKGROUND)
                offset = (
                    box_left + (cell_px - picture.width) // 2,
                    top + (cell_px - picture.height) // 2,
                )
                sheet.paste(picture, offset, picture)
    out = io.BytesIO()
    sheet.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _centred(draw: ImageDraw, label: str, left: int, top: int, width: int) -> None:
    fitted = _fit(label, width, LABEL_PX)
    x = left + (width - _text_width(fitted, LABEL_PX)) // 2
    draw.text((x, top), fitted, fill=INK, font=_font(LABEL_PX))


def _empty(draw: ImageDraw, box: tuple[int, int, int, int], note: str) -> None:
    draw.rectangle(box, fill=EMPTY_BACKGROUND, outline=EMPTY_OUTLINE, width=2)
    left, top, right, bottom = box
    x = left + (right - left - _text_width(note, LABEL_PX)) // 2
    draw.text((x, (top + bottom) // 2 - LABEL_PX // 2), note, fill=MUTED, font=_font(LABEL_PX))


def _thumbnail(data: bytes, cell_px: int) -> PILImage | None:
    """The image fitted into a ``cell_px`` square (RGBA, aspect kept); None if unreadable."""
    from PIL import ImageOps

    from steps.imaging.pixels.decoding import Undecodable, decode

    try:
        image = ImageOps.exif_transpose(decode(data))
    except Undecodable:
        return None
    return ImageOps.contain(image.convert("RGBA"), (cell_px, cell_px))
