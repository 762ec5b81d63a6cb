"""A step's warnings under its gallery: what happened to each image (on_moderation)."""

from __future__ import annotations

from fetchflow.run.artifact_content import render_gallery

RECORD = {
    "id": "a1",
    "file_name": "hero-1.png",
    "file_type": "image/png",
    "file_size": 10,
    "file_url": "https://example.test/hero-1.png",
    "storage_uri": "s3://bucket/hero-1.png",
    "sha256": "0" * 64,
    "width": 8,
    "height": 8,
    "model": "gemini-2.5-flash-image",
}


def render(notes: tuple[str, ...]) -> str:
    return render_gallery(
        [RECORD],
        step_id="hero",
        step_title="hero",
        step_type="image_generation",
        read_bytes=None,
        notes=notes,
    )


def test_the_steps_warnings_are_listed_once_under_the_table() -> None:
    skipped = (
        "image 2 of 3: blocked at input by gemini-2.5-flash-image; skipped (on_moderation: skip)"
    )
    retried = "image 1 of 3: blocked at output by gemini-2.5-flash-image; retry 1 of 2"

    markdown = render((skipped, retried, skipped))

    table_end = markdown.index("| 1 | [hero-1.png]")
    notes = markdown[table_end:].split("Notes:\n\n", 1)[1].splitlines()
    # markdown-escaped, so a note cannot inject markup
    assert notes == [
        r"- image 2 of 3: blocked at input by gemini-2.5-flash-image; skipped "
        r"\(on\_moderation: skip\)",
        "- image 1 of 3: blocked at output by gemini-2.5-flash-image; retry 1 of 2",
    ]


def test_no_warnings_no_notes_section() -> None:
    assert "Notes:" not in render(())
