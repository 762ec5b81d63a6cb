"""Where a user waits on image providers: a ``count: 8`` Gemini step, and SDK clients.

1. A ``count: 8`` step on ``gemini-2.5-flash-image`` (one image per call), the real SDK
   against the fake Gemini server answering each call after ``--delay`` seconds, run as the
   runner runs it (``ImageGenerationStep().run``, a real LocalStore). Ideal at concurrency
   ``c``: ``ceil(8 / c) * delay``. Prints wall time and the ratio to the ideal, at
   ``FETCHFLOW_PROVIDER_CONCURRENCY`` 4 and 1 (the calls one after the other, as before).
2. What a step pays for its provider: a fresh ``genai.Client`` / ``openai.OpenAI`` (a new
   pool and SSL context each) against the shared one a later step gets
   (:mod:`steps.imaging.providers.clients`); and the SDK import the first step no longer
   pays (preflight does).

    .venv/bin/python bench/bench_providers.py [--delay 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "steps")]

from fakes.fake_gemini import FakeGemini  # noqa: E402

from fetchflow.settings import Settings  # noqa: E402
from fetchflow.step import StepContext  # noqa: E402
from fetchflow.storage import LocalStore  # noqa: E402
from fetchflow.templating import Templates  # noqa: E402
from steps.image_generation import ImageGenerationConfig, ImageGenerationStep  # noqa: E402
from steps.imaging.settings import ImageSettings, use_image_settings  # noqa: E402

KEY = "AIzaBenchNotARealKey0123456789"
COUNT = 8


def eight_images(fake: FakeGemini, root: Path, concurrency: int, delay: float) -> float:
    """Seconds one ``count: 8`` step takes at ``concurrency``."""
    use_image_settings(ImageSettings(provider_concurrency=concurrency))
    store = LocalStore(root / "assets", spool_dir=root / "spool")
    ctx = StepContext(
        step_id="hero",
        step_type="image_generation",
        run_id=str(uuid.uuid4()),
        run_name="bench",
        workflow="bench",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("bench"),
        settings=Settings(home=root / "home", store=str(store.root)),
        templates=Templates(),
        scope={},
        open_store=lambda: store,
    )
    config = ImageGenerationConfig.model_validate(
        {
            "prompt": "a paper crane",
            "model": "gemini-2.5-flash-image",
            "aspect_ratio": "1:1",
            "count": COUNT,
            "seed": 1,
        }
    )
    for _ in range(COUNT):
        fake.queue_slow(delay)
    started = time.perf_counter()
    assets = ImageGenerationStep().run(config, ctx)
    elapsed = time.perf_counter() - started
    assert len(assets) == COUNT
    return elapsed


def fan_out(delay: float, repeat: int) -> None:
    print(f"count: {COUNT} on gemini-2.5-flash-image, each call {delay:g} s, median of {repeat}")
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as folder:
        os.environ["GEMINI_API_KEY"] = KEY
        os.environ["GOOGLE_GEMINI_BASE_URL"] = fake.base_url
        eight_images(fake, Path(folder) / "warm", 4, 0.0)  # client made, SDK imported
        medians = {}
        for concurrency in (4, 1):
            times = [
                eight_images(fake, Path(folder) / f"c{concurrency}-{n}", concurrency, delay)
                for n in range(repeat)
            ]
            ideal = math.ceil(COUNT / concurrency) * delay
            medians[concurrency] = statistics.median(times)
            print(
                f"  concurrency {concurrency}: {medians[concurrency]:6.2f} s   ideal {ideal:5.2f} s"
                f"   ratio {medians[concurrency] / ideal:4.2f}"
            )
        print(f"  one at a time / concurrent: {medians[1] / medians[4]:4.2f}x")


def clients(repeat: int) -> None:
    from google import genai
    from google.genai import types
    from openai import OpenAI

    from steps.imaging.providers.google_images import GeminiProvider
    from steps.imaging.providers.openai_images import OpenAIProvider

    def median_ms(make: object) -> float:
        times = []
        for _ in range(repeat * 5):
            started = time.perf_counter()
            make()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    fresh_g = median_ms(
        lambda: genai.Client(api_key=KEY, http_options=types.HttpOptions(timeout=120_000))
    )
    fresh_o = median_ms(lambda: OpenAI(api_key="sk-bench", max_retries=0, timeout=120))
    GeminiProvider(KEY, "http://127.0.0.1:9")  # the first step makes the shared client
    OpenAIProvider("sk-bench", "http://127.0.0.1:9/v1")
    shared_g = median_ms(lambda: GeminiProvider(KEY, "http://127.0.0.1:9"))
    shared_o = median_ms(lambda: OpenAIProvider("sk-bench", "http://127.0.0.1:9/v1"))
    print("provider for a later step: fresh SDK client vs the shared one")
    print(
        f"  google  fresh {fresh_g:6.1f} ms   shared {shared_g:6.3f} ms"
        f"   ratio {fresh_g / shared_g:7.0f}x"
    )
    print(
        f"  openai  fresh {fresh_o:6.1f} ms   shared {shared_o:6.3f} ms"
        f"   ratio {fresh_o / shared_o:7.0f}x"
    )
    for module in ("google.genai", "openai"):
        code = (
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        )
        seconds = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(repeat)
        ]
        print(
            f"  import {module}: {statistics.median(seconds) * 1000:.0f} ms, paid at preflight"
            " now, not in the first step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    fan_out(args.delay, args.repeat)
    clients(args.repeat)


if __name__ == "__main__":
    main()
