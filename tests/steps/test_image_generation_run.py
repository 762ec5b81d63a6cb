"""The image_generation step run end to end through ``run``: a real LocalStore, no Prefect."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from fetchflow.errors import ProviderError, StepError
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from steps.image_generation import (
    PREVIEW_NOTICE,
    ImageAsset,
    ImageGenerationConfig,
    ImageGenerationStep,
)
from steps.imaging.models.catalog import CATALOG
from steps.imaging.options import OutputOptions
from steps.imaging.partial import KeptImage, PartialImages
from steps.imaging.production import MadeImage, plan_job, produce, share_usage
from steps.imaging.providers.base import ImageRequest, ProviderImage, ProviderResult
from steps.imaging.settings import ImageSettings, use_image_settings

KEY_VARIABLES = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
#: What ``keep`` hands back in tests that do not look at it.
KEPT = KeptImage("uri", {})


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


def context(
    tmp_path: Path, store: LocalStore, run_id: str = "run-1", **image_settings: object
) -> StepContext:
    use_image_settings(ImageSettings(**image_settings))  # type: ignore[arg-type]
    return StepContext(
        step_id="hero",
        step_type="image_generation",
        run_id=run_id,
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.image"),
        settings=Settings(home=tmp_path),
        templates=Templates(),
        scope={},
        open_store=lambda: store,
    )


def run(config: ImageGenerationConfig, ctx: StepContext) -> list[ImageAsset]:
    return ImageGenerationStep().run(config, ctx)


def test_preview_images_are_stored_with_full_records(tmp_path: Path, store: LocalStore) -> None:
    config = ImageGenerationConfig(
        prompt="a blue vase",
        model="preview",
        aspect_ratio="16:9",
        count=3,
        output_format="webp",
        output_compression=80,
        style="pastel",
        seed=5,
    )
    assets = run(config, context(tmp_path, store))
    prompt_sha = hashlib.sha256(b"a blue vase\n\nStyle: pastel").hexdigest()
    assert [a.file_name for a in assets] == ["hero-1.webp", "hero-2.webp", "hero-3.webp"]
    assert [a.index for a in assets] == [0, 1, 2]
    for asset in assets:
        assert (asset.width, asset.height, asset.file_type) == (1024, 576, "image/webp")
        assert (asset.model, asset.provider, asset.charge_type) == (
            "preview",
            "preview",
            "personal",
        )
        assert asset.prompt_sha256 == prompt_sha and asset.seed == 5
        assert asset.cost_usd == 0.0 and asset.usage is None
        assert asset.provenance["prompt_sha256"] == prompt_sha
        data = store.read(asset.storage_uri)
        assert hashlib.sha256(data).hexdigest() == asset.sha256
        assert Image.open(io.BytesIO(data)).format == "WEBP"
    assert len({a.sha256 for a in assets}) == 3
    dumped = ImageGenerationStep.dump_output(assets)
    assert isinstance(dumped, list) and dumped[0]["file_url"].startswith("file://")


def test_same_step_twice_gives_the_same_files(tmp_path: Path, store: LocalStore) -> None:
    config = ImageGenerationConfig(prompt="a mug", model="preview", size="256x256")
    first = run(config, context(tmp_path, store))
    second = run(config, context(tmp_path, store, run_id="run-2"))
    assert first[0].sha256 == second[0].sha256 and first[0].run_id != second[0].run_id


def test_auto_without_keys_uses_preview_and_says_so_once(
    tmp_path: Path, store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    config = ImageGenerationConfig(prompt="a mug", size="128x128", background="transparent")
    ctx = context(tmp_path, store, run_id="run-auto")
    with caplog.at_level(logging.INFO, logger="fetchflow.test.image"):
        assets = run(config, ctx)
        run(config, ctx)
    assert assets[0].model == "preview"
    assert Image.open(io.BytesIO(store.read(assets[0].storage_uri))).mode == "RGBA"
    assert [r.getMessage() for r in caplog.records].count(PREVIEW_NOTICE) == 1


def test_a_named_model_without_a_key_fails_before_anything_is_made(
    tmp_path: Path, store: LocalStore
) -> None:
    config = ImageGenerationConfig(prompt="a mug", model="gpt-image-2")
    with pytest.raises(
        StepError,
        match=r"charge_type: personal needs your openai key for model gpt-image-2, and "
        r"OPENAI_API_KEY is not set",
    ):
        ImageGenerationStep.preflight({"prompt": "a mug", "model": "gpt-image-2"}, Settings())
    with pytest.raises(StepError, match=r"OPENAI_API_KEY is not set"):
        run(config, context(tmp_path, store))
    assert not (tmp_path / "assets").exists() or not list((tmp_path / "assets").rglob("*.*"))


def test_hosted_never_falls_back_to_a_personal_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "personal-key")
    raw = {"prompt": "x", "model": "gemini-2.5-flash-image", "charge_type": "hosted"}
    with pytest.raises(StepError, match=r"FETCHFLOW_HOSTED_GEMINI_API_KEY is not set") as caught:
        ImageGenerationStep.preflight(raw, Settings())
    assert "personal-key" not in caught.value.format()
    monkeypatch.setenv("FETCHFLOW_HOSTED_GEMINI_API_KEY", "operator-key")
    ImageGenerationStep.preflight(raw, Settings())
    ImageGenerationStep.preflight({**raw, "charge_type": "personal"}, Settings())


def test_preflight_waits_for_templated_fields() -> None:
    ImageGenerationStep.preflight({"prompt": "x", "model": "<< inputs.model >>"}, Settings())


@dataclass
class ScriptedProvider:
    """A provider that answers from a script: results or errors, one per call."""

    script: list[ProviderResult | Exception]
    name: str = "scripted"
    requests: list[ImageRequest] = field(default_factory=list)

    def generate(self, request: ImageRequest) -> ProviderResult:
        self.requests.append(request)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> ProviderImage:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return ProviderImage(out.getvalue(), "image/png")


def job(count: int, **changes: object) -> object:
    options: dict[str, object] = {
        "count": count,
        "size": None,
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "quality": "auto",
        "background": "auto",
        "moderation": "auto",
        "output_format": "png",
        "output_compression": None,
        "seed": 11,
    }
    options.update(changes)
    spec = CATALOG["gemini-2.5-flash-image"]
    return plan_job(spec, prompt="p", options=OutputOptions(**options))  # type: ignore[arg-type]


def test_counts_above_the_per_request_limit_make_several_calls() -> None:
    provider = ScriptedProvider(
        [ProviderResult([png((64, 64), (i, 0, 0))], {"output_tokens": 7}, "g") for i in range(3)]
    )
    kept: list[int] = []

    def keep(made: MadeImage) -> KeptImage:
        kept.append(made.index)
        return KeptImage(f"uri-{made.index}", {"index": made.index})

    produce(job(3), provider, keep)  # type: ignore[arg-type]
    assert kept == [0, 1, 2]
    assert [r.count for r in provider.requests] == [1, 1, 1]
    assert [r.seed for r in provider.requests] == [11, 12, 13]
    assert {(r.aspect_ratio, r.resolution, r.width) for r in provider.requests} == {
        ("1:1", "1K", None)
    }


def test_a_later_failed_call_keeps_the_images_already_made() -> None:
    refused = ProviderError(
        message="the request was blocked by moderation",
        hint="change the prompt",
        provider="scripted",
        retryable=False,
    )
    provider = ScriptedProvider([ProviderResult([png((64, 64), (1, 2, 3))], None, "g"), refused])
    kept: list[int] = []

    def keep(made: MadeImage) -> KeptImage:
        kept.append(made.index)
        return KeptImage(f"uri-{made.index}", {"index": made.index})

    with pytest.raises(
        PartialImages,
        match=r"blocked by moderation; 1 of 2 images were made and kept before that: uri-0",
    ) as caught:
        produce(job(2), provider, keep)  # type: ignore[arg-type]
    assert kept == [0] and caught.value.retryable is False
    assert caught.value.__cause__ is refused
    assert caught.value.kept == [{"index": 0}] and caught.value.asked == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            ProviderResult([], None, "g"), r"returned 0 of the 1 images asked", id="empty"
        ),
        pytest.param(
            ProviderResult([ProviderImage(b"\x00garbage", "image/png")], None, "g"),
            r"returned 8 bytes that are not a readable image",
            id="garbage",
        ),
        pytest.param(
            ProviderResult([png((300, 100), (0, 0, 0))], None, "g"),
            r"returned 300x100, not the 1:1 ratio asked",
            id="wrong-ratio",
        ),
    ],
)
def test_bad_answers_fail_the_step_and_nothing_is_kept(
    answer: ProviderResult, message: str
) -> None:
    kept: list[object] = []
    with pytest.raises(StepError, match=message):
        produce(job(1), ScriptedProvider([answer]), lambda made: kept.append(made) or KEPT)  # type: ignore[arg-type, func-returns-value]
    assert kept == []


def test_transparency_asked_but_not_returned_is_an_error() -> None:
    provider = ScriptedProvider([ProviderResult([png((64, 64), (9, 9, 9))], None, "g")])
    with pytest.raises(StepError, match=r"returned an image without transparency"):
        produce(job(1, background="transparent"), provider, lambda made: KEPT)  # type: ignore[arg-type]


def test_usage_shares_add_up_to_the_call() -> None:
    shares = [share_usage({"total_tokens": 10, "output_tokens": 7}, 3, i) for i in range(3)]
    assert shares[0] == {"total_tokens": 4, "output_tokens": 3}
    assert sum(s["total_tokens"] for s in shares if s) == 10
    assert share_usage(None, 3, 0) is None


def test_importing_the_step_loads_no_pillow_and_no_sdk() -> None:
    code = (
        "import sys, steps.image_generation, steps.imaging.providers;"
        "print(sorted(m for m in ('PIL', 'openai', 'google.genai', 'prefect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
