"""The content of fetchflow's Prefect artifacts, as plain data (no Prefect here).

Thumbnails, the gallery of a step's files (thumbnails, then a table of the files), a text
output and the run summary, all rendered as markdown by pure functions;
:mod:`fetchflow.orchestration.artifacts` publishes them. A step with several images shows
them as a labelled grid (:func:`render_grid`: a matrix step's axis values as row and column
headers, read from the records' ``matrix`` alone, else the images numbered side by side),
then its contact sheet if it made one. Thumbnails are made with Pillow
from bytes read through the store (so they render even when the bucket is private) and kept
small: one gallery stays well under what Prefect stores comfortably. Stored files are named
by their content's sha256, so a thumbnail is made once per content and size
(:class:`ThumbnailCache`): a cache hit's gallery makes none. Every text that comes from a
run is escaped, links are limited to http(s) and file URLs, and the summary holds no file
URL (a signed query string in an error message is cut).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from fetchflow.errors import RunError
from fetchflow.matrix_grid import Grid, is_contact_sheet, plan_grid
from fetchflow.storage.keys import sha256_of_key

if TYPE_CHECKING:
    from fetchflow.run.report import RunReport

__all__ = [
    "ThumbnailCache",
    "asset_records",
    "asset_table",
    "error_text",
    "render_gallery",
    "render_grid",
    "render_output",
    "render_summary",
    "render_text_outputs",
    "thumbnail_uri",
]

THUMBNAIL_PX = 256
SMALL_THUMBNAIL_PX = 96
THUMBNAIL_QUALITY = 70
#: Characters of inline thumbnails one gallery may hold (Prefect drops events over ~1.5 MB).
GALLERY_BUDGET = 600_000
OUTPUT_PREVIEW_CHARS = 4_000
_RECORD_KEYS = frozenset({"file_url", "file_name", "file_type", "storage_uri"})
_LINK_SCHEMES = ("https://", "http://", "file://")
_SIGNED_QUERY = re.compile(r"(https?://[^\s?#)]+)\?[^\s)]*")


def asset_records(output: object) -> list[Mapping[str, object]] | None:
    """``output`` as a list of asset-record dicts, or None when it is something else."""
    if not isinstance(output, list) or not output:
        return None
    if all(isinstance(item, Mapping) and item.keys() >= _RECORD_KEYS for item in output):
        return list(output)
    return None


@cache
def _webp() -> bool:
    from PIL import features

    return bool(features.check("webp"))


def thumbnail_uri(data: bytes, max_px: int = THUMBNAIL_PX) -> str:
    """A small ``data:image/...;base64`` preview of an image (WebP, or JPEG without WebP).

    Raises:
        PIL.UnidentifiedImageError, OSError: The bytes are not an image Pillow reads.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (max_px, max_px))  # JPEG: decode at a reduced scale
        image = ImageOps.exif_transpose(opened)
    image.thumbnail((max_px, max_px))
    alpha = image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info
    buffer = io.BytesIO()
    if _webp():
        image.convert("RGBA" if alpha else "RGB").save(
            buffer, "WEBP", quality=THUMBNAIL_QUALITY, method=4
        )
        mime = "image/webp"
    else:
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA"))
        flat.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


class ThumbnailCache:
    """Thumbnails by content (the sha256 in a stored file's name) and size, in memory and,
    with ``folder``, on disk (so a later run's cache hit makes none). Thread-safe.

    Args:
        folder: Where thumbnails are kept between processes; None keeps them in memory only.
        capacity: Most thumbnails kept in memory.
    """

    def __init__(self, folder: Path | None = None, capacity: int = 512) -> None:
        self.folder = folder
        self._capacity = capacity
        self._memory: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = threading.Lock()
        #: Thumbnails made (not found): what a cache hit must not increase.
        self.made = 0

    def get(self, storage_uri: str, read: Callable[[], bytes], max_px: int) -> str:
        """The thumbnail of the stored file ``storage_uri`` (``read`` gives its bytes when
        it must be made)."""
        sha = sha256_of_key(unquote(urlsplit(storage_uri).path).rsplit("/", 1)[-1])
        if sha is None:  # not content-named: nothing says two reads are the same bytes
            return thumbnail_uri(read(), max_px)
        key = (sha, max_px)
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                return found
        path = self.folder / sha[:2] / f"{sha}-{max_px}.txt" if self.folder else None
        uri = _read_text(path) if path is not None else None
        if uri is None or not uri.startswith("data:image/"):
            uri = thumbnail_uri(read(), max_px)
            self.made += 1
            if path is not None:
                _write_text(path, uri)
        with self._lock:
            self._memory[key] = uri
            while len(self._memory) > self._capacity:
                self._memory.popitem(last=False)
        return uri


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, ValueError):
        return None


def _write_text(path: Path, text: str) -> None:
    """Write atomically; a cache that cannot be written is only slower."""
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="ascii")
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


# -- markdown helpers -----------------------------------------------------------------------


def _md(text: object) -> str:
    """Text that markdown shows literally (on one line)."""
    plain = " ".join(str(text).split())
    return re.sub(r"([\\`*_{}\[\]()#+!|<>~])", r"\\\1", plain)


def _url(value: object) -> str | None:
    """A link target safe in markdown, or None for anything but http(s) and file URLs."""
    url = str(value or "")
    if not url.startswith(_LINK_SCHEMES):
        return None
    return quote(url, safe="/:?#[]@!$&'*+,;=%~-._")


def _size(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # pragma: no cover - the loop always returns


def _dims(record: Mapping[str, object]) -> str:
    width, height = record.get("width"), record.get("height")
    return f"{width}×{height}" if width and height else ""


def _cost(value: object) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else ""


def error_text(error: BaseException) -> str:
    """An error for a log line: our own errors are safe to show; others by type only."""
    if isinstance(error, RunError):
        return error.format().splitlines()[0]
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


def _is_image(record: Mapping[str, object]) -> bool:
    return str(record.get("file_type", "")).startswith("image/")


# -- renderers (pure) -----------------------------------------------------------------------


def render_gallery(
    records: Sequence[Mapping[str, object]],
    *,
    step_id: str,
    step_title: str,
    step_type: str,
    read_bytes: Callable[[str], bytes] | None,
    warn: Callable[[str], None] = lambda _: None,
    thumbnails: ThumbnailCache | None = None,
    links: Callable[[str], str] | None = None,
    notes: Sequence[str] = (),
    combinations: Sequence[Mapping[str, object]] = (),
) -> str:
    """The Output artifact of a step that made files: linked thumbnails, then a table.

    A thumbnail that cannot be made (unreadable bytes, not an image, over the size budget)
    leaves the file's link and a note instead; ``warn`` is told why. ``thumbnails`` keeps
    thumbnails by content (None: a private one, for this gallery only). ``links`` maps a
    record's ``file_url`` to the link shown (the local store's file server). ``notes`` are
    what the step warned about (an image blocked and skipped, retried, made by another
    model), listed under the table, each once. ``combinations``: a matrix step's every
    combination, so one that made nothing is an empty cell even when its row or column
    has no image at all.
    """
    cache = thumbnails if thumbnails is not None else ThumbnailCache(capacity=len(records))
    budget = GALLERY_BUDGET
    thumbs: dict[int, str] = {}
    rows = [
        "| # | file | size | dimensions | model | cost | note |",
        "|---:|---|---:|---|---|---:|---|",
    ]
    shown_urls: list[str] = []
    for number, record in enumerate(records, 1):
        file_url = str(record.get("file_url") or "")
        if links is not None and file_url:
            file_url = links(file_url)
        shown_urls.append(file_url)
        name, link = _md(record.get("file_name", "")), _url(file_url)
        note = ""
        if _is_image(record):
            uri: str | None = None
            if read_bytes is None:
                note = "no preview: the store is not readable here"
            else:
                storage_uri = str(record["storage_uri"])
                read = functools.partial(read_bytes, storage_uri)
                try:
                    uri = cache.get(storage_uri, read, THUMBNAIL_PX)
                    if len(uri) > budget:
                        uri = cache.get(storage_uri, read, SMALL_THUMBNAIL_PX)
                except Exception as error:  # any store or image failure: show the link
                    note = f"no preview: {_md(type(error).__name__)}"
                    warn(f"no thumbnail for {record.get('file_name')}: {error_text(error)}")
            if uri is not None and len(uri) > budget:
                uri, note = None, "no preview: the gallery is full (size limit)"
            if uri is not None:
                budget -= len(uri)
                image = f"![{name}]({uri})"
                thumbs[number - 1] = f"[{image}]({link})" if link else image
            if is_contact_sheet(record):
                note = note or "contact sheet of the images above"
        cells = [
            str(number),
            f"[{name}]({link})" if link else name,
            _size(record.get("file_size")),
            _dims(record),
            _md(record.get("model") or ""),
            _cost(record.get("cost_usd")),
            note,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    images = sum(1 for record in records if _is_image(record) and not is_contact_sheet(record))
    count = f"{images} image{'s' * (images != 1)}" if images else f"{len(records)} file(s)"
    head = [f"### {_md(step_title)} · {_md(step_type)}", ""]
    local = [url for url in shown_urls if url.startswith("file://")]
    if local:
        # Browsers do not open file:// links from a web page (the UI drops them): say where.
        folder = local[0].removeprefix("file://").rsplit("/", 2)[0]
        where = (
            f"The files are in the local store, under `{folder}` (run `fetchflow server` "
            "to open them from here)."
        )
    else:
        where = "Click a thumbnail for the full file."
    head += [f"Step `{step_id}` made {count}. {where}", ""]
    pictures = _thumbnails_section(records, thumbs, shown_urls, combinations)
    said = ["", "Notes:", "", *(f"- {_md(note)}" for note in dict.fromkeys(notes))]
    return "\n".join([*head, *pictures, *rows, *(said if notes else []), ""])


def _thumbnails_section(
    records: Sequence[Mapping[str, object]],
    thumbs: Mapping[int, str],
    urls: Sequence[str],
    combinations: Sequence[Mapping[str, object]] = (),
) -> list[str]:
    """The gallery's pictures: a labelled grid when a step made several images (its matrix
    axes as row and column headers, else numbered side by side), else one line; then any
    contact sheet."""
    images = [
        index
        for index, record in enumerate(records)
        if _is_image(record) and not is_contact_sheet(record)
    ]
    sheets = [
        thumbs[index]
        for index, record in enumerate(records)
        if is_contact_sheet(record) and index in thumbs
    ]
    lines: list[str] = []
    matrices = [_matrix_of(records[index]) for index in images]
    if len(images) > 1 or any(matrices):
        lines += [
            *render_grid(
                plan_grid(matrices, combinations),
                [_cell_picture(records[i], thumbs.get(i), urls[i]) for i in images],
            ),
            "",
        ]
    else:
        line = " ".join(thumbs[index] for index in images if index in thumbs)
        lines += [line, ""] if line else []
    if sheets:
        lines += ["Contact sheet: " + " ".join(sheets), ""]
    return lines


def _matrix_of(record: Mapping[str, object]) -> Mapping[str, object]:
    found = record.get("matrix")
    return found if isinstance(found, Mapping) else {}


def _cell_picture(record: Mapping[str, object], thumb: str | None, url: str) -> str:
    """A grid cell's content for one record: its thumbnail, else its file name linked as
    the table links it (``url``)."""
    if thumb is not None:
        return thumb
    name, link = _md(record.get("file_name", "")), _url(url)
    return f"[{name}]({link})" if link else name


def render_grid(grid: Grid, pictures: Sequence[str]) -> list[str]:
    """A markdown table of ``grid``: the axis values as row and column headers, each cell
    its pictures (``pictures`` indexed as the grid's cells), an empty combination *no
    image*; a line saying what was left out of a grid too large to show whole."""
    header = [_md(grid.corner), *(_md(label) for label in grid.column_labels)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + ":---:|" * len(grid.column_labels),
    ]
    for label, row in zip(grid.row_labels, grid.cells, strict=True):
        cells = [f"**{_md(label)}**" if label else ""]
        cells += [" ".join(pictures[i] for i in cell) if cell else "*no image*" for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    if grid.left_out:
        lines += [
            "",
            f"{grid.left_out} more not in the grid (it shows {grid.shown}); all are in the table.",
        ]
    return lines


def asset_table(records: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """The rows of a step's asset table artifact, one per record."""
    return [
        {
            "file_name": record.get("file_name"),
            "file_type": record.get("file_type"),
            "size": _size(record.get("file_size")),
            "dimensions": _dims(record),
            "model": record.get("model") or "",
            "cost_usd": record.get("cost_usd"),
            "id": record.get("id"),
            "file_url": record.get("file_url"),
        }
        for record in records
    ]


def render_output(output: object, *, step_id: str, step_title: str, step_type: str) -> str:
    """The Output artifact of a step whose output is not files: the output as text."""
    if isinstance(output, str):
        text, language = output, "text"
    else:
        text, language = json.dumps(output, indent=2, ensure_ascii=False, default=str), "json"
    if len(text) > OUTPUT_PREVIEW_CHARS:
        more = len(text) - OUTPUT_PREVIEW_CHARS
        text = text[:OUTPUT_PREVIEW_CHARS] + f"\n… ({more} more characters)"
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return "\n".join(
        [
            f"### {_md(step_title)} · {_md(step_type)}",
            "",
            f"Output of step `{step_id}`:",
            "",
            f"{fence}{language}",
            text,
            fence,
            "",
        ]
    )


def _totals(output: object) -> tuple[int, dict[str, float], float | None]:
    """Images, summed usage and summed cost (None when nothing has a cost) of an output."""
    images, usage, cost = 0, dict[str, float](), None
    for record in asset_records(output) or []:
        images += _is_image(record) and not is_contact_sheet(record)
        found = record.get("usage")
        if isinstance(found, Mapping):
            for name, value in found.items():
                if isinstance(value, int | float):
                    usage[str(name)] = usage.get(str(name), 0) + value
        if isinstance(record.get("cost_usd"), int | float):
            cost = (cost or 0.0) + float(record["cost_usd"])  # type: ignore[arg-type]
    return images, usage, cost


def _usage_text(usage: Mapping[str, float]) -> str:
    return ", ".join(f"{_md(name)} {value:g}" for name, value in sorted(usage.items()))


def _note(text: str | None) -> str:
    """An error for the summary: first line, no signed query strings, trimmed."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = _SIGNED_QUERY.sub(r"\1?…", line)
    return _md(line[:200] + ("…" if len(line) > 200 else ""))


def render_summary(
    report: RunReport,
    *,
    step_titles: Mapping[str, str],
    step_types: Mapping[str, str],
    seconds: float | None = None,
) -> str:
    """The run summary artifact: one row per step, then the totals."""
    marks = {"completed": "✓", "failed": "✗", "skipped": "–"}
    rows = [
        "| step | type | status | time | attempts | images | usage | cost | note |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    images, usage, cost, time_sum, attempts = 0, dict[str, float](), None, 0.0, 0
    for step_id, result in report.steps.items():
        step_images, step_usage, step_cost = _totals(result.output)
        images, time_sum, attempts = (
            images + step_images,
            time_sum + result.seconds,
            attempts + result.attempts,
        )
        for name, value in step_usage.items():
            usage[name] = usage.get(name, 0) + value
        if step_cost is not None:
            cost = (cost or 0.0) + step_cost
        title = step_titles.get(step_id, step_id)
        named = f"{_md(title)} (`{step_id}`)" if title != step_id else f"`{step_id}`"
        cells = [
            named,
            _md(step_types.get(step_id, "")),
            f"{marks.get(result.status, '')} {result.status}",
            f"{result.seconds:.2f} s",
            str(result.attempts),
            str(step_images) if step_images else "",
            _usage_text(step_usage),
            _cost(step_cost),
            _note(result.error),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    counts: dict[str, int] = {}
    for result in report.steps.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    statuses = ", ".join(f"{count} {status}" for status, count in counts.items())
    total = ["**total**", "", statuses, f"{time_sum:.2f} s", str(attempts), str(images)]
    rows.append("| " + " | ".join([*total, _usage_text(usage), _cost(cost), ""]) + " |")
    wall = f" in {seconds:.1f} s" if seconds is not None else ""
    return "\n".join(
        [
            f"## {_md(report.workflow)}: {report.status}{wall}",
            "",
            _note(report.message) or "(no message)",
            "",
            *rows,
            "",
            f"{len(report.steps)} step(s) · {images} image(s) · "
            f"cost {_cost(cost) or 'none recorded'}",
            "",
        ]
    )


def render_text_outputs(
    report: RunReport, *, step_titles: Mapping[str, str], step_types: Mapping[str, str]
) -> str | None:
    """The run's text outputs artifact: each step whose output is text or data (not files),
    trimmed, in step order; None when no step has one. One artifact per run (a Prefect API
    call per trivial step would cost more than the steps)."""
    sections = [
        render_output(
            result.output,
            step_id=step_id,
            step_title=step_titles.get(step_id, step_id),
            step_type=step_types.get(step_id, ""),
        )
        for step_id, result in report.steps.items()
        if result.output not in (None, "", [], {}) and asset_records(result.output) is None
    ]
    if not sections:
        return None
    return "\n".join([f"## {_md(report.workflow)}: text outputs", "", *sections])
