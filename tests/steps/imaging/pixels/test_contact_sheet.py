"""The contact sheet drawing: cell positions and sizes, labels, empty cells, bounds, bytes."""

from __future__ import annotations

import io
import itertools

from PIL import Image

from fetchflow.matrix_grid import plan_grid
from steps.imaging.pixels.contact_sheet import (
    CELL_PX,
    EMPTY_BACKGROUND,
    GAP,
    MARGIN,
    draw_contact_sheet,
    sheet_layout,
)

COLOURS = ["red", "green", "blue", "orange", "purple", "yellow"]
MATRIX = [{"product": p, "style": s} for p in ("mug", "tote", "cap") for s in ("ink", "oil")]


def png(colour: str, size: tuple[int, int] = (300, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def sheet_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels of text ink (dark grey) in ``box``."""
    histogram = image.crop(box).convert("L").histogram()
    return sum(histogram[:160])


def test_cells_sit_in_rows_and_columns_after_the_labels() -> None:
    grid = plan_grid(MATRIX)
    layout = sheet_layout(grid)
    assert layout.cell_size == (CELL_PX, CELL_PX)
    lefts = {cell[0] for row in layout.cells for cell in row}
    tops = [row[0][1] for row in layout.cells]
    assert len(lefts) == 2 and max(lefts) - min(lefts) == CELL_PX + GAP
    assert [b - a for a, b in itertools.pairwise(tops)] == [CELL_PX + GAP] * 2
    assert min(lefts) == MARGIN + layout.label_width + GAP
    right, bottom = max(lefts) + CELL_PX + MARGIN, tops[-1] + CELL_PX + MARGIN
    assert layout.size == (right, bottom)


def test_images_fill_their_cells_and_a_missing_one_is_an_empty_cell() -> None:
    matrices = MATRIX[:3] + MATRIX[4:]  # tote/oil failed
    images = [png(colour) for colour in COLOURS[:5]]
    grid = plan_grid(matrices)
    layout = sheet_layout(grid)
    sheet = sheet_of(draw_contact_sheet(grid, images, title="hero · 5 images"))
    assert sheet.size == layout.size
    expected = {(0, 0): "red", (0, 1): "green", (1, 0): "blue", (2, 0): "orange"}
    expected[(2, 1)] = "purple"
    for (row, column), colour in expected.items():
        left, top = layout.cells[row][column]
        centre = (left + CELL_PX // 2, top + CELL_PX // 2)
        assert sheet.getpixel(centre) == Image.new("RGB", (1, 1), colour).getpixel((0, 0))
    left, top = layout.cells[1][1]
    assert sheet.getpixel((left + 10, top + 10)) == EMPTY_BACKGROUND
    assert dark_pixels(sheet, (left, top, left + CELL_PX, top + CELL_PX)) > 0  # "no image"


def test_every_label_is_drawn_where_it_belongs() -> None:
    grid = plan_grid(MATRIX)
    layout = sheet_layout(grid)
    sheet = sheet_of(draw_contact_sheet(grid, [png(c) for c in COLOURS], title="hero"))
    header_top = layout.cells[0][0][1] - 28
    for column in range(2):  # "ink", "oil" above their columns
        left = layout.cells[0][column][0]
        assert dark_pixels(sheet, (left, header_top, left + CELL_PX, header_top + 28)) > 0
    for row in range(3):  # "mug", "tote", "cap" left of their rows
        top = layout.cells[row][0][1]
        box = (MARGIN, top, MARGIN + layout.label_width, top + CELL_PX)
        assert dark_pixels(sheet, box) > 0
    # Nothing is drawn between the label column and the cells, nor in the gaps.
    first_left = layout.cells[0][0][0]
    assert dark_pixels(sheet, (first_left - GAP, header_top, first_left, sheet.height)) == 0
    # An unlabelled grid (no matrix) has no row labels: the label column stays blank.
    plain = plan_grid([{}, {}])
    plain_layout = sheet_layout(plain)
    drawn = sheet_of(draw_contact_sheet(plain, [png("red"), png("blue")], title="x"))
    top = plain_layout.cells[0][0][1]
    assert dark_pixels(drawn, (MARGIN, top, MARGIN + plain_layout.label_width, top + CELL_PX)) == 0


def test_same_inputs_same_bytes_and_a_bounded_size() -> None:
    grid = plan_grid(MATRIX)
    images = [png(c) for c in COLOURS]
    first = draw_contact_sheet(grid, images, title="hero")
    assert draw_contact_sheet(grid, images, title="hero") == first
    assert draw_contact_sheet(grid, images, title="hero!") != first
    huge = plan_grid([{"r": r, "c": c} for r in range(40) for c in range(40)])
    layout = sheet_layout(huge)
    assert max(layout.size) < 3_600
    assert huge.left_out == 1_600 - 12 * 12


def test_unreadable_bytes_are_an_empty_cell_not_an_error() -> None:
    grid = plan_grid([{}, {}])
    layout = sheet_layout(grid)
    sheet = sheet_of(draw_contact_sheet(grid, [b"not an image", png("red")], title="x"))
    left, top = layout.cells[0][0]
    assert sheet.getpixel((left + 10, top + 10)) == EMPTY_BACKGROUND
    left, top = layout.cells[0][1]
    assert sheet.getpixel((left + CELL_PX // 2, top + CELL_PX // 2)) == (255, 0, 0)
