"""image_upscale on fal's clarity-upscaler, and fal answers given as https URLs, through the
real ``fal-client`` SDK in ``fetchflow run`` subprocesses against the fake fal
(:mod:`tests.steps.fakes.fake_fal`, which also serves the answer URLs over HTTPS).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from PIL import Image

from tests.steps.fakes.fake_fal import FakeFal
from tests.steps.imaging.providers.test_fal_provider import FAL_KEY, fake_fal

__all__ = ["fake_fal"]  # the shared fixture

REPO = Path(__file__).resolve().parents[4]
SMALL = REPO / "tests/data/upscale/art/small.png"


#: A project whose folder is the current one (no templates/): its file's size is known to
#: the estimate, which reads project files under the current folder.
PRICED = """name: priced
steps:
  - id: large
    type: image_upscale
    images: art/small.png
    model: fal-ai/clarity-upscaler
    factor: 4
  - id: free
    type: image_upscale
    images: art/small.png
    model: auto
"""


def _cli(
    *args: str, env: Mapping[str, str], home: Path, cwd: Path = REPO, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", *args],
        cwd=cwd,
        env={**env, "FETCHFLOW_HOME": str(home), "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.prefect
def test_upscale_on_clarity_with_url_answers_downloaded(
    fake_fal: FakeFal, clean_env: Mapping[str, str], prefect_api: str, tmp_path: Path
) -> None:
    fake_fal.answer_with_urls()
    env = {
        **clean_env,
        **fake_fal.sdk_env(),
        "FAL_KEY": FAL_KEY,
        "PREFECT_API_URL": prefect_api,
        # the fake's "CDN" is on 127.0.0.1, which the safe fetcher refuses by default
        "FETCHFLOW_ALLOW_PRIVATE_URLS": "true",
    }
    done = _cli("run", "--json", "tests/data/fal/upscale.yaml", env=env, home=tmp_path)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    [draft] = steps["draft"]["output"]
    [large] = steps["large"]["output"]
    # both answers were URLs, each downloaded once from the fake over HTTPS
    assert fake_fal.downloads == ["/files/1-0.png", "/files/up-2.png"]
    # one call to the upscaler: the draft as a data: URI, the factor under fal's name
    [call] = [c for c in fake_fal.calls if c.model == "fal-ai/clarity-upscaler"]
    assert set(call.body) == {"image_url", "upscale_factor"}
    assert call.body["upscale_factor"] == 2
    sent = base64.b64decode(call.body["image_url"].partition(",")[2])
    assert Image.open(io.BytesIO(sent)).size == (512, 512)
    assert (large["model"], large["provider"], large["charge_type"]) == (
        "fal-ai/clarity-upscaler",
        "fal",
        "personal",
    )
    assert (large["width"], large["height"], large["cost_usd"]) == (1024, 1024, 0.03)
    assert large["provenance"]["source_sha256"] == draft["sha256"]
    assert large["provenance"]["upscaled_from"] == draft["sha256"]
    assert large["provenance"]["source"] == draft["storage_uri"]
    assert (large["provenance"]["factor"], large["provenance"]["method"]) == ("2", "clarity")
    stored = Path(large["storage_uri"].removeprefix("file://")).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == large["sha256"]
    assert FAL_KEY not in done.stdout + done.stderr


def test_dry_run_prices_the_output_and_a_missing_key_stops_before_any_call(
    fake_fal: FakeFal, clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, **fake_fal.sdk_env(), "FAL_KEY": FAL_KEY}
    project = tmp_path / "project"
    (project / "art").mkdir(parents=True)
    (project / "art" / "small.png").write_bytes(SMALL.read_bytes())
    (project / "priced.yaml").write_text(PRICED, encoding="utf-8")
    flow = "priced.yaml"
    dry = _cli("run", "--dry-run", flow, env=env, home=tmp_path, cwd=project)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    # 24x16 x4 = 96x64: one started megapixel at $0.03; Pillow (auto) costs nothing
    assert (
        "  large  image_upscale      $0.0300  fal-ai/clarity-upscaler 4x to 96x64, "
        "$0.03 per output megapixel" in lines
    )
    assert "  free   image_upscale      $0.0000  pillow (lanczos): free" in lines
    assert "estimated total: $0.0300" in lines
    without = {k: v for k, v in env.items() if k != "FAL_KEY"}
    refused = _cli("run", flow, env=without, home=tmp_path, cwd=project)
    assert refused.returncode == 2
    assert refused.stderr == (
        'fetchflow: priced.yaml:3: step "large" (image_upscale): charge_type: personal needs '
        "your fal key for model "
        "fal-ai/clarity-upscaler, and FAL_KEY is not set\n"
        "  hint: export FAL_KEY=..., name a Prefect Secret block with api_key_secret:, or "
        "use charge_type: hosted if the operator provides keys\n"
    )
    assert fake_fal.calls == [] and "Traceback" not in refused.stderr


def test_a_url_answer_on_a_private_address_is_refused_unless_allowed(
    fake_fal: FakeFal,
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fetchflow.errors import ProviderError
    from steps.imaging.providers.fal_images import FalProvider
    from steps.imaging.settings import ImageSettings, use_image_settings

    scrub_environ(monkeypatch)
    url = f"https://{fake_fal.host}/files/up-1.png"
    use_image_settings(ImageSettings())
    provider = FalProvider(api_key=FAL_KEY)
    endpoint = provider.endpoint("fal-ai/aura-sr")
    with pytest.raises(ProviderError) as refused:
        provider._download(url, "image 1 of 1", endpoint)
    assert refused.value.message == (
        f"fal {endpoint}: fal image 1 of 1 {url}: 127.0.0.1 is a loopback address; "
        "fetching from it is refused"
    )
    assert refused.value.hint == (
        "use a public URL, or set FETCHFLOW_ALLOW_PRIVATE_URLS=true if fetchflow may reach "
        "your private network; not retried (the call may have been billed)"
    )
    assert not refused.value.retryable and fake_fal.downloads == []
