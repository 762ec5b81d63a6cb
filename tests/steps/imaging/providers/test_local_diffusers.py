"""The local diffusers provider (``model: local/<folder>``) on a tiny random-weight pipeline.

The pipeline is built and saved by the test (``fakes.tiny_diffusers``, a session fixture:
a few seconds, nothing downloaded); every call runs 2 denoising steps at 32x32 on the CPU.
``LOCAL_DIFFUSERS_TEST_DEVICE=cuda`` runs the same tests on a GPU
(``bench/local_diffusers_gpu.sh``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.tiny_diffusers import TINY_MODEL, save_tiny_pipeline
from PIL import Image

from fetchflow.cli import main
from steps.imaging.models.rules import Tuning
from steps.imaging.providers import make_provider
from steps.imaging.providers.base import EditRequest, ImageRequest, ProviderImage
from steps.imaging.providers.local_diffusers import (
    LocalDiffusersProvider,
    LocalModelMissing,
    find_model_folder,
    pipelines_loaded,
)

DEVICE = os.environ.get("LOCAL_DIFFUSERS_TEST_DEVICE", "cpu")
MODEL = f"local/{TINY_MODEL}"
FLOW = Path(__file__).resolve().parents[4] / "flows" / "local_model.yaml"
FAST = Tuning(steps=2, guidance=5.0, negative_prompt="blurry")
#: The line of the example's first step (``- id: hero``), where its errors are placed.
HERO_LINE = FLOW.read_text(encoding="utf-8").splitlines().index("  - id: hero") + 1


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding ``tiny-sd``, the tiny pipeline."""
    folder = tmp_path_factory.mktemp("local-models")
    save_tiny_pipeline(folder)
    return folder


def request(**changes: object) -> ImageRequest:
    base = ImageRequest(
        model=MODEL,
        prompt="a red cat",
        width=32,
        height=32,
        aspect_ratio=None,
        resolution=None,
        count=1,
        quality="auto",
        background="auto",
        moderation="auto",
        output_format="png",
        output_compression=None,
        seed=7,
        tuning=FAST,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def png(color: tuple[int, int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def hole_mask() -> bytes:
    """Opaque, with a transparent (repaint) square in the middle."""
    mask = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (8, 8, 24, 24))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def rgb(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def pixels(data: bytes) -> tuple[tuple[int, int], str]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.format or ""


def test_generate_same_seed_same_bytes_and_one_load_for_two_providers(
    models: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models, copy)  # a folder of its own: its load count starts at 0
    first = LocalDiffusersProvider(copy, DEVICE)  # two steps, two providers
    second = LocalDiffusersProvider(copy, DEVICE)

    a = first.generate(request())
    b = second.generate(request())
    c = first.generate(request(seed=8))
    batch = second.generate(request(count=2))

    assert a.images[0].data == b.images[0].data
    assert a.images[0].data != c.images[0].data
    assert (a.model, a.usage, a.images[0].mime_type) == (MODEL, None, "image/png")
    assert pixels(a.images[0].data) == ((32, 32), "PNG")
    assert len(batch.images) == 2 and batch.images[0].data != batch.images[1].data
    assert pipelines_loaded(copy / TINY_MODEL) == 1


def test_tuning_reaches_the_pipeline(models: Path) -> None:
    provider = LocalDiffusersProvider(models, DEVICE)
    made = {
        name: provider.generate(request(tuning=tuning)).images[0].data
        for name, tuning in {
            "fast": FAST,
            "more steps": replace(FAST, steps=3),
            "other guidance": replace(FAST, guidance=1.5),
            "other negative": replace(FAST, negative_prompt="sharp"),
        }.items()
    }
    assert len(set(made.values())) == 4, "steps, guidance and negative_prompt change the image"


def test_image_to_image_and_inpainting(models: Path) -> None:
    provider = LocalDiffusersProvider(models, DEVICE)
    source = ProviderImage(png((200, 40, 40, 255)), "image/png")
    edit = EditRequest(**vars(request(tuning=replace(FAST, strength=0.5))), images=[source])
    again = provider.edit(edit)
    moved = provider.edit(replace(edit, tuning=replace(FAST, strength=1.0)))
    inpainted = provider.edit(
        replace(edit, mask=ProviderImage(hole_mask(), "image/png"), tuning=FAST)
    )

    assert provider.edit(edit).images[0].data == again.images[0].data
    outputs = {again.images[0].data, moved.images[0].data, inpainted.images[0].data}
    assert len(outputs) == 3
    assert {pixels(data) for data in outputs} == {((32, 32), "PNG")}


def test_make_provider_reads_the_settings(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCHFLOW_LOCAL_MODEL_DIR", str(models))
    monkeypatch.setenv("FETCHFLOW_LOCAL_DEVICE", DEVICE)
    provider = make_provider("local")
    assert isinstance(provider, LocalDiffusersProvider)
    assert (provider.model_dir, provider.device) == (models, DEVICE)


def test_a_cached_hugging_face_snapshot_is_found(models: Path, tmp_path: Path) -> None:
    entry = tmp_path / "hub" / "models--acme--tiny-sd"
    shutil.copytree(models / TINY_MODEL, entry / "snapshots" / "abc123")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("abc123\n", encoding="utf-8")
    found = find_model_folder("local/acme/tiny-sd", None, {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert found == entry / "snapshots" / "abc123"


def test_a_missing_model_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(LocalModelMissing) as caught:
        find_model_folder("local/acme/sd", tmp_path, {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert caught.value.format() == (
        f"model local/acme/sd: no diffusers model folder found: no "
        f"{tmp_path}/acme/sd/model_index.json (under FETCHFLOW_LOCAL_MODEL_DIR); the Hugging "
        f"Face cache {tmp_path}/hub has no snapshot of acme/sd\n"
        f"  hint: save the pipeline (save_pretrained) to {tmp_path}/acme/sd and set "
        "FETCHFLOW_LOCAL_MODEL_DIR, or `hf download acme/sd` once on this machine, then run "
        "again (nothing is downloaded during a run)"
    )


def _run_cli(
    args: list[str], cwd: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = main(args)
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.prefect
def test_the_example_flow_runs_on_the_tiny_pipeline(
    models: Path,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FETCHFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FETCHFLOW_LOCAL_MODEL_DIR", str(models))
    monkeypatch.setenv("FETCHFLOW_LOCAL_DEVICE", DEVICE)
    shutil.copytree(FLOW.parent / "assets", tmp_path / "flows" / "assets")
    loads = pipelines_loaded(models / TINY_MODEL)

    code, out, err = _run_cli(["run", str(FLOW), "--json"], tmp_path, {}, capsys)

    assert code == 0, err
    document = json.loads(out)
    assert document["status"] == "completed", document
    steps = document["steps"]
    hero, again = steps["hero"]["output"][0], steps["again"]["output"][0]
    assert hero["sha256"] == again["sha256"]  # same seed, same bytes
    assert (hero["model"], hero["provider"], hero["cost_usd"]) == (MODEL, "local", 0.0)
    direct = LocalDiffusersProvider(models, DEVICE).generate(
        request(
            prompt=hero_prompt(),
            width=64,
            height=64,
            seed=42,
            tuning=Tuning(steps=4, guidance=6.5, negative_prompt="blurry, text"),
        )
    )
    stored = Path(hero["storage_uri"].removeprefix("file://"))
    assert rgb(stored.read_bytes()) == rgb(direct.images[0].data)  # steps, guidance reached it
    restyled, patched = steps["restyle"]["output"][0], steps["patch"]["output"][0]
    assert len({hero["sha256"], restyled["sha256"], patched["sha256"]}) == 3
    assert patched["provenance"]["edit"] == "inpaint"
    assert pipelines_loaded(models / TINY_MODEL) - loads <= 1  # four steps, at most one load


def hero_prompt() -> str:
    import yaml

    flow = yaml.safe_load(FLOW.read_text(encoding="utf-8"))
    return str(next(step for step in flow["steps"] if step["id"] == "hero")["prompt"]).strip()


def _fetchflow(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", *args],
        cwd=cwd,
        env={**os.environ, **env, "FETCHFLOW_HOME": str(cwd / "home")},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def test_a_missing_model_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    done = _fetchflow(
        ["run", str(FLOW)],
        tmp_path,
        {"FETCHFLOW_LOCAL_MODEL_DIR": str(tmp_path / "models"), "HF_HUB_CACHE": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f'fetchflow: {FLOW}:{HERO_LINE}: step "hero" (image_generation): model {MODEL}: no '
        "diffusers "
        f"model folder found: no {tmp_path}/models/{TINY_MODEL}/model_index.json (under "
        "FETCHFLOW_LOCAL_MODEL_DIR)",
        f"  hint: save the pipeline (save_pretrained) to {tmp_path}/models/{TINY_MODEL} and "
        "set FETCHFLOW_LOCAL_MODEL_DIR, then run again (nothing is downloaded during a run)",
    ]
    assert not (tmp_path / "home" / "prefect").exists(), "Prefect started for a missing model"


def test_missing_torch_names_the_extra(models: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "no-torch"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n',
        encoding="utf-8",
    )
    done = _fetchflow(
        ["run", str(FLOW)],
        tmp_path,
        {"FETCHFLOW_LOCAL_MODEL_DIR": str(models), "PYTHONPATH": str(shadow)},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f'fetchflow: {FLOW}:{HERO_LINE}: step "hero" (image_generation): model {MODEL} runs '
        "on this "
        "machine with torch, diffusers and transformers, and torch is not installed (No "
        "module named 'torch')",
        "  hint: pip install 'fetchflow[local]' on the machine that runs this step (a GPU "
        "worker), or use another model",
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="mps exists on macOS")
def test_a_device_this_machine_lacks_is_refused_before_the_run(
    models: Path, tmp_path: Path
) -> None:
    done = _fetchflow(
        ["run", str(FLOW)],
        tmp_path,
        {"FETCHFLOW_LOCAL_MODEL_DIR": str(models), "FETCHFLOW_LOCAL_DEVICE": "mps"},
    )

    assert done.returncode == 2, done.stderr
    [first, hint] = done.stderr.splitlines()
    assert first.startswith(
        f'fetchflow: {FLOW}:{HERO_LINE}: step "hero" (image_generation): '
        "FETCHFLOW_LOCAL_DEVICE=mps, "
        "but this machine's torch "
    )
    assert first.endswith(" has no mps device")
    assert hint == (
        "  hint: set FETCHFLOW_LOCAL_DEVICE=auto (or cpu), or install the torch build for this "
        "machine's GPU"
    )
    assert not (tmp_path / "home" / "prefect").exists(), "Prefect started for a missing device"
