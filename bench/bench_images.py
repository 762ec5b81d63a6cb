"""What an image step does around its provider calls: checks, store, gallery.

Two ratios, in one process, no Prefect, no network (the step's own work only):

- **pass-through store**: N provider answers (PNG and JPEG, 1024x1024, already in the format
  the step wants) checked (:func:`inspect_image`), finished (:func:`finish_image`, no
  conversion) and stored in a local store, against the raw floor: Pillow opens and decodes
  each and the bytes are written to a file. Ratio raw/ours (target >= 0.8; before the
  change each answer was decoded twice and thumbnailed on the critical path: 0.08x).
- **8-way fan-out**: 8 workers each wait 1 s (the provider call), then check, finish and
  store their image and hand the gallery to the background publisher (here: rendering it,
  thumbnails included, in a thread, as ``publish_step_output(background=True)`` does);
  the wall time until the last worker is done, over the 1 s ideal (target <= 1.1). The
  gallery is drained afterwards and timed apart.

.venv/bin/python bench/bench_images.py [--images 24] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from fetchflow.run.artifact_content import ThumbnailCache, render_gallery
from fetchflow.storage.local import LocalStore
from steps.imaging.pixels.finishing import finish_image, inspect_image

PASS_THROUGH_TARGET = 0.8
FAN_OUT_TARGET = 1.1
CALL_SECONDS = 1.0


def answer(fmt: str, seed: int) -> bytes:
    """A 1024x1024 picture with some detail (not a flat colour, which compresses to nothing)."""
    random.seed(seed)
    image = Image.linear_gradient("L").resize((1024, 1024)).convert("RGB")
    noise = Image.effect_noise((1024, 1024), 40).convert("RGB")
    image = Image.blend(image, noise, 0.3)
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def ours(store: LocalStore, data: bytes, mime: str, fmt: str, index: int) -> dict[str, object]:
    checked = inspect_image(data, mime, source="model bench (preview)", size=(1024, 1024))
    finished = finish_image(
        data, checked, output_format=fmt, output_compression=None, compressed_by_provider=True
    )
    record = store.put(
        finished.data,
        file_name=f"hero-{index + 1}.{fmt.replace('jpeg', 'jpg')}",
        file_type=finished.file_type,
        step_id="hero",
        run_id="bench",
        width=finished.width,
        height=finished.height,
    )
    return record.model_dump(mode="json")


def raw(folder: Path, data: bytes, index: int) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    (folder / f"raw-{index}.bin").write_bytes(data)


def pass_through(answers: list[tuple[bytes, str, str]], repeat: int, tmp: Path) -> None:
    ours_times, raw_times = [], []
    for attempt in range(repeat):
        store = LocalStore(tmp / f"store-{attempt}", spool_dir=tmp / "spool")
        folder = tmp / f"raw-{attempt}"
        folder.mkdir()
        started = time.perf_counter()
        for index, (data, _, _) in enumerate(answers):
            raw(folder, data, index)
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for index, (data, mime, fmt) in enumerate(answers):
            ours(store, data, mime, fmt, index)
        ours_times.append(time.perf_counter() - started)
    mine, floor = statistics.median(ours_times), statistics.median(raw_times)
    n = len(answers)
    print(
        f"pass-through store: {n} answers: ours {mine * 1000 / n:.1f} ms/image, raw Pillow "
        f"decode + write {floor * 1000 / n:.1f} ms/image: ratio raw/ours {floor / mine:.2f}x "
        f"(target >= {PASS_THROUGH_TARGET})"
    )


def fan_out(answers: list[tuple[bytes, str, str]], repeat: int, tmp: Path) -> None:
    walls, drains = [], []
    for attempt in range(repeat):
        store = LocalStore(tmp / f"fan-{attempt}", spool_dir=tmp / "spool")
        cache = ThumbnailCache()
        publisher = ThreadPoolExecutor(1)  # the one publisher thread

        def step(
            index: int,
            store: LocalStore = store,
            cache: ThumbnailCache = cache,
            publisher: ThreadPoolExecutor = publisher,
        ) -> None:
            time.sleep(CALL_SECONDS)  # the provider call
            data, mime, fmt = answers[index % len(answers)]
            record = ours(store, data, mime, fmt, index)
            publisher.submit(
                render_gallery,
                [record],
                step_id=f"s{index}",
                step_title="s",
                step_type="image_generation",
                read_bytes=store.read,
                thumbnails=cache,
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(step, range(8)))
        walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        publisher.shutdown(wait=True)
        drains.append(time.perf_counter() - started)
    wall = statistics.median(walls)
    print(
        f"8-way fan-out of {CALL_SECONDS:g} s calls: {wall:.3f} s against the ideal "
        f"{CALL_SECONDS:g} s: ratio {wall / CALL_SECONDS:.3f}x (target <= {FAN_OUT_TARGET}); "
        f"galleries drained {statistics.median(drains) * 1000:.0f} ms later"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    answers = [
        (answer("PNG", i), "image/png", "png")
        if i % 2 == 0
        else (answer("JPEG", i), "image/jpeg", "jpeg")
        for i in range(args.images)
    ]
    print(f"load average {os.getloadavg()[0]:.2f}, {threading.active_count()} thread(s)")
    with tempfile.TemporaryDirectory() as folder:
        pass_through(answers, args.repeat, Path(folder))
        fan_out(answers, args.repeat, Path(folder))


if __name__ == "__main__":
    main()
