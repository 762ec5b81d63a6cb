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


@pytest.mark.parametrize(
    ("value", "position"), [("fal-a\nb:c", 6), ("fal-\u00e9:c", 5), ("fal\x00x", 4)]
)
def test_a_key_no_http_header_can_carry_is_refused_without_showing_it(
    value: str, position: int
) -> None:
    for charge_type, environ, settings in (
        ("personal", {"FAL_KEY": value}, ImageSettings()),
        ("hosted", {}, ImageSettings.model_validate({"hosted_fal_api_key": value})),
    ):
        with pytest.raises(StepError) as refused:
            key_sources("fal", charge_type, settings, environ, None)
        variable = "FAL_KEY" if charge_type == "personal" else "FETCHFLOW_HOSTED_FAL_API_KEY"
        assert refused.value.message == (
            f"{variable} holds a character no HTTP header can carry (character {position} of "
            "the key: a line break, a control character or a non-ASCII letter)"
        )
        assert refused.value.hint == f"set {variable} to the key alone, as the provider shows it"
        assert value not in str(refused.value)


def test_a_hosted_key_of_only_whitespace_is_not_set() -> None:
    settings = ImageSettings.model_validate({"hosted_fal_api_key": "  "})

    assert key_sources("fal", "hosted", settings, {}, None) is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        pytest.param(
            "   \n",
            "charge_type: personal needs your fal key for model fal-ai/flux/dev, and FAL_KEY "
            "is not set",
            id="blank",
        ),
        pytest.param(
            "fal-id\n:secret-7f3a",
            "FAL_KEY holds a character no HTTP header can carry (character 7 of the key: a "
            "line break, a control character or a non-ASCII letter)",
            id="line-break",
        ),
    ],
)
def test_run_refuses_a_blank_or_broken_fal_key_before_anything_runs(
    value: str, said: str, clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    (tmp_path / "keyed.yaml").write_text(FLOW, encoding="utf-8")
    env = {
        **clean_env,
        "FAL_KEY": value,
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
    first, hint = done.stderr.splitlines()
    assert first == f'fetchflow: keyed.yaml:3: step "hero" (image_generation): {said}'
    assert hint.startswith(("  hint: export FAL_KEY=...", "  hint: set FAL_KEY to the key alone"))
    assert "secret-7f3a" not in done.stderr
    assert not [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
