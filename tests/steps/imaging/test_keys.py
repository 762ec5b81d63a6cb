"""Provider keys as users set them: a pasted key's surrounding whitespace (a trailing line
break, spaces) is not part of it, and a variable holding only whitespace is not set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from fetchflow.errors import StepError
from steps.imaging.keys import key_sources, resolve
from steps.imaging.settings import ImageSettings

REPO = Path(__file__).resolve().parents[3]
FLOW = """name: keyed
steps:
  - id: hero
    type: image_generation
    prompt: a lighthouse
    model: fal-ai/flux/dev
"""


@pytest.mark.parametrize("value", ["", "   ", "\n", " \t\n"])
def test_a_variable_of_only_whitespace_is_no_key(value: str) -> None:
    environ = {"FAL_KEY": value}

    assert key_sources("fal", "personal", ImageSettings(), environ, None) is None
    with pytest.raises(StepError) as missing:
        resolve("fal", "fal-ai/flux/dev", "personal", ImageSettings(), environ)
    assert missing.value.message == (
        "charge_type: personal needs your fal key for model fal-ai/flux/dev, and FAL_KEY is not set"
    )


def test_the_whitespace_around_a_key_is_not_sent() -> None:
    environ = {"FAL_KEY": "  fal-id:secret\n", "OPENAI_API_KEY": "sk-abc \n"}

    fal = resolve("fal", "fal-ai/flux/dev", "personal", ImageSettings(), environ)
    openai = resolve("openai", "gpt-image-2", "personal", ImageSettings(), environ)
    secret = resolve(
        "fal",
        "fal-ai/flux/dev",
        "personal",
        ImageSettings(),
        {},
        secret_name="fal-key",
        read_secret=lambda name: " fal-block:key\n",
    )

    assert (fal.api_key, fal.source) == ("fal-id:secret", "FAL_KEY")
    assert openai.api_key == "sk-abc"
    assert secret.api_key == "fal-block:key"


def test_a_hosted_key_of_only_whitespace_is_not_set() -> None:
    settings = ImageSettings.model_validate({"hosted_fal_api_key": "  "})

    assert key_sources("fal", "hosted", settings, {}, None) is None


def test_run_refuses_a_blank_fal_key_before_anything_runs(
    clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    (tmp_path / "keyed.yaml").write_text(FLOW, encoding="utf-8")
    env = {
        **clean_env,
        "FAL_KEY": "   \n",
        "FETCHFLOW_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", "keyed.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        'fetchflow: keyed.yaml:3: step "hero" (image_generation): charge_type: personal needs '
        "your fal key for model fal-ai/flux/dev, and FAL_KEY is not set\n"
        "  hint: export FAL_KEY=..., name a Prefect Secret block with api_key_secret:, or use "
        "charge_type: hosted if the operator provides keys\n"
    )
    assert not [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
