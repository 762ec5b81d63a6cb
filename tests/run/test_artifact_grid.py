"""The labelled grid in a step's Output artifact, from the records' matrix values alone."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fetchflow.matrix_grid import plan_grid
from fetchflow.run.artifact_content import render_gallery, render_grid
from fetchflow.storage import LocalStore

LINKED_THUMB = re.compile(r"\[!\[([^\]]*)\]\((data:image/[^)]+)\)\]\(([^)]+)\)")


def png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


def records(store: LocalStore, matrices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    made = []
    for number, values in enumerate(matrices, 1):
        record = store.put(
            png(f"#{number * 30:02x}4080"),
            file_name=f"hero-{number}.png",
            file_type="image/png",
            step_id="hero",
            run_id="run-1",
        )
        made.append({**record.model_dump(mode="json"), "matrix": values})
    return made


def gallery(made: list[dict[str, Any]], store: LocalStore, **kwargs: Any) -> str:
    return render_gallery(
        made, step_id="hero", step_title="Hero", step_type="image", read_bytes=store.read, **kwargs
    )


def test_a_failed_combination_is_an_empty_cell_and_rows_follow_the_first_axis(
    store: LocalStore,
) -> None:
    matrices = [{"size": s, "tone": t} for s in ("S", "M") for t in ("warm", "cold")]
    made = records(store, matrices[:1] + matrices[2:])  # S/cold failed
    markdown = gallery(made, store)
    table = markdown.split("| size \\\\ tone | warm | cold |\n|---|:---:|:---:|\n", 1)[1]
    first, second = table.splitlines()[:2]
    assert first.startswith("| **S** | [![hero-1.png](data:image/")
    assert first.endswith(" | *no image* |")
    assert [name for name, _, _ in LINKED_THUMB.findall(second)] == ["hero-2.png", "hero-3.png"]


def test_links_are_the_tables_links_and_labels_cannot_inject_markdown(store: LocalStore) -> None:
    made = records(store, [{"style": "x](javascript:alert(1)) |"}, {"style": "<b>"}])
    markdown = gallery(made, store, links=lambda url: url.replace("file://", "http://files"))
    assert "| style | x\\]\\(javascript:alert\\(1\\)\\) \\| | \\<b\\> |" in markdown
    assert all(url.startswith("http://files/") for *_, url in LINKED_THUMB.findall(markdown))
    # Without a preview (here: no readable store), a cell holds the file's link.
    no_store = render_gallery(
        made,
        step_id="hero",
        step_title="Hero",
        step_type="image",
        read_bytes=None,
        links=lambda url: url.replace("file://", "http://files"),
    )
    grid_row = no_store.split("\n\n")[2].splitlines()[2]
    assert grid_row.startswith("|  | [hero-1.png](http://files/")


def test_a_grid_too_large_says_what_it_leaves_out() -> None:
    grid = plan_grid([{"r": r, "c": c} for r in range(14) for c in range(2)])
    lines = render_grid(grid, [f"p{i}" for i in range(28)])
    assert lines[-1] == "4 more not in the grid (it shows 24); all are in the table."
    assert lines[2] == "| **0** | p0 | p1 |"


def test_one_image_keeps_the_single_line(store: LocalStore) -> None:
    made = records(store, [{}])
    markdown = gallery(made, store)
    assert "|---|:---:|" not in markdown
    assert len(LINKED_THUMB.findall(markdown)) == 1


def test_a_value_whose_combinations_all_made_nothing_keeps_its_column(store: LocalStore) -> None:
    # tone=cold was blocked and skipped for every size: no record says "cold".
    every = [{"size": s, "tone": t} for s in ("S", "M") for t in ("warm", "cold")]
    made = records(store, [every[0], every[2]])

    markdown = gallery(made, store, combinations=every)

    table = markdown.split("| size \\\\ tone | warm | cold |\n|---|:---:|:---:|\n", 1)[1]
    rows = table.splitlines()[:2]
    assert [row.split(" | ")[0] for row in rows] == ["| **S**", "| **M**"]
    assert all(row.endswith(") | *no image* |") for row in rows)
    assert [name for name, _, _ in LINKED_THUMB.findall(table)] == ["hero-1.png", "hero-2.png"]
