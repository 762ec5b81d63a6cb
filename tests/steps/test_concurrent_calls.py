"""A ``count: 8`` Gemini step (one image per call) makes its calls concurrently.

The step runs as the runner runs it (``ImageGenerationStep().run`` with a real
:class:`~fetchflow.storage.LocalStore`), the real ``google-genai`` SDK against the fake
Gemini server, at ``FETCHFLOW_PROVIDER_CONCURRENCY`` 4. Concurrency is read from the fake's
own clock (``FakeServer.spans``: when each request came in and when its answer went out),
never from the test's wall time: 8 calls of 0.5 s make two waves of four in flight
together. Every promise of the one-at-a-time loop holds: each image stored and recorded
(``ctx.keep``) as soon as it is verified, a failure keeps every paid image
(:class:`~steps.imaging.partial.PartialImages`), no call starts once a stop is requested,
each call is retried on its own, output in index order with seeds ``seed + index``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini
from fakes.provenance import same_picture

from fetchflow.errors import Interrupted
from fetchflow.interrupt import clear_stop, request_stop
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from steps.image_generation import ImageAsset, ImageGenerationConfig, ImageGenerationStep
from steps.imaging.partial import PartialImages
from steps.imaging.settings import ImageSettings, use_image_settings

fake_gemini = fixtures.fake_gemini

KEY = "AIzaTestSECRETconcurrent0123456789"
LOGGER = "fetchflow.test.concurrent_calls"
EIGHT = {
    "prompt": "a paper crane",
    "model": "gemini-2.5-flash-image",
    "aspect_ratio": "1:1",
    "count": 8,
    "seed": 7,
}
SLOW = 0.5


@pytest.fixture(autouse=True)
def gemini_env(fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    clear_stop()
    yield
    clear_stop()


class Step:
    """One run of the image step: its context, its store, what it recorded with ``keep``."""

    def __init__(self, root: Path, **image_settings: Any) -> None:
        use_image_settings(
            ImageSettings(provider_concurrency=4, provider_max_delay_seconds=0.05, **image_settings)
        )
        self.store = LocalStore(root / "assets", spool_dir=root / "spool")
        self.recorded: list[dict[str, Any]] = []
        self.ctx = StepContext(
            step_id="hero",
            step_type="image_generation",
            run_id=str(uuid.uuid4()),
            run_name="concurrent",
            workflow="concurrent",
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
            logger=logging.getLogger(LOGGER),
            settings=Settings(home=root / "home", store=str(self.store.root)),
            templates=Templates(),
            scope={},
            open_store=lambda: self.store,
            on_kept=self._record,
        )

    def _record(self, item: object) -> None:
        assert isinstance(item, dict)
        # Recorded the moment it is stored: its bytes are in the store already.
        assert self.store.path_of(item["storage_uri"]).is_file()
        self.recorded.append(item)

    def run(self, **fields: object) -> list[ImageAsset]:
        config = ImageGenerationConfig.model_validate({**EIGHT, **fields})
        return ImageGenerationStep().run(config, self.ctx)

    def files(self) -> list[Path]:
        return sorted(p for p in self.store.root.rglob("*") if p.is_file())


def peak(spans: list[tuple[float, float]]) -> int:
    """The most requests the fake had in flight at one time."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def seed_of(request: Any) -> int:
    return int(request.json["generationConfig"]["seed"])


def sent_image(fake: FakeGemini, seed: int) -> bytes:
    """The PNG the fake answered to the call with ``seed``."""
    request = next(r for r in fake.requests if r.json and seed_of(r) == seed)
    body = fake.answer(request).body
    assert isinstance(body, dict)
    return base64.b64decode(body["candidates"][0]["content"]["parts"][0]["inlineData"]["data"])


def assert_kept(step: Step, fake: FakeGemini, records: list[dict[str, Any]]) -> None:
    """Each record's file holds the image of its own call (seed ``7 + index``)."""
    for record in records:
        assert record["seed"] == 7 + record["index"]
        data = step.store.read(record["storage_uri"])
        same_picture(data, sent_image(fake, record["seed"]))
        assert record["sha256"] == hashlib.sha256(data).hexdigest()


def test_eight_calls_at_concurrency_four_make_two_waves_of_four(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    for _ in range(8):
        fake_gemini.queue_slow(SLOW)
    step = Step(tmp_path)

    assets = step.run()

    spans = sorted(fake_gemini.spans)
    assert len(spans) == len(fake_gemini.requests) == 8
    assert peak(spans) == 4  # four at a time: never more, and not one after the other
    first_answer = min(end for _, end in spans)
    first_wave, second_wave = spans[:4], spans[4:]
    # The first four were all in flight before any answer came back; the last four each
    # waited for a free slot, then were in flight together.
    assert all(start < first_answer for start, _ in first_wave)
    assert all(start >= first_answer for start, _ in second_wave)
    assert max(start for start, _ in second_wave) < min(end for _, end in second_wave)
    # Output in index order whatever order the answers came in, seeds 7 + index.
    assert [a.index for a in assets] == list(range(8))
    assert [a.seed for a in assets] == list(range(7, 15))
    assert sorted(seed_of(r) for r in fake_gemini.requests) == list(range(7, 15))
    assert_kept(step, fake_gemini, [a.model_dump(mode="json") for a in assets])
    assert sorted(r["index"] for r in step.recorded) == list(range(8))  # each one kept
    assert len(step.files()) == 8


def test_a_refused_fifth_call_keeps_every_image_that_was_made(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    for _ in range(4):
        fake_gemini.queue_slow(SLOW)
    fake_gemini.queue_safety_stop()  # the fifth call to arrive: not retried
    step = Step(tmp_path)

    with pytest.raises(PartialImages) as caught:
        step.run()

    assert peak(fake_gemini.spans) == 4
    made = len(fake_gemini.requests) - 1  # every call but the refused one made an image
    assert 4 <= made <= 7  # the calls in flight when it came back finished; none started after
    error = caught.value
    assert f"; {made} of 8 images were made and kept before that: file://" in error.message
    # on_moderation: fail (the default) names the image and the stage first
    assert re.match(
        r"image \d of 8: blocked at output \(HARM_CATEGORY_SEXUALLY_EXPLICIT\): google ",
        error.message,
    )
    assert "IMAGE_SAFETY" in error.message
    assert error.retryable is False and error.asked == 8
    kept = error.kept
    indexes = [record["index"] for record in kept]
    assert indexes == sorted(indexes) and len(indexes) == made  # in index order
    assert_kept(step, fake_gemini, kept)  # type: ignore[arg-type]
    assert sorted(r["index"] for r in step.recorded) == indexes  # each recorded when stored
    assert len(step.files()) == made
    refused = next(r for r in fake_gemini.requests if seed_of(r) - 7 not in indexes)
    assert not any(r["index"] == seed_of(refused) - 7 for r in step.recorded)


def test_a_stop_requested_mid_wave_starts_no_further_call_and_keeps_the_wave(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    for _ in range(8):
        fake_gemini.queue_slow(SLOW)
    step = Step(tmp_path)

    def stop_once_four_are_in_flight() -> None:
        deadline = time.monotonic() + 60
        while len(fake_gemini.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        request_stop()

    stopper = threading.Thread(target=stop_once_four_are_in_flight, daemon=True)
    stopper.start()
    with pytest.raises(PartialImages, match=r"interrupted: image \d of 8 not started") as caught:
        step.run()
    stopper.join()

    assert len(fake_gemini.requests) == 4  # the wave in flight finished; nothing after it
    assert peak(fake_gemini.spans) == 4
    assert isinstance(caught.value.__cause__, Interrupted)
    assert sorted(r["index"] for r in caught.value.kept) == sorted(
        seed_of(r) - 7 for r in fake_gemini.requests
    )
    assert len(step.files()) == 4


def test_a_failed_call_is_retried_on_its_own_while_the_others_go_on(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.queue_server_error(503)  # whichever call arrives first fails once
    for _ in range(8):
        fake_gemini.queue_slow(SLOW)
    step = Step(tmp_path)

    assets = step.run()

    seeds = sorted(seed_of(r) for r in fake_gemini.requests)
    assert len(seeds) == 9 and sorted(set(seeds)) == list(range(7, 15))  # one call twice
    assert peak(fake_gemini.spans) == 4  # the others did not wait for it
    assert [a.index for a in assets] == list(range(8))
    assert len(step.files()) == 8
