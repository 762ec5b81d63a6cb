"""Settings: .env.example documents every field (the engine's and the image steps'), the
storage defaults follow FETCHFLOW_HOME, and a bad image setting is one clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from fetchflow.errors import SettingsInvalid
from fetchflow.settings import PRESIGN_MAX_SECONDS, Settings
from steps.imaging.settings import ImageSettings, image_settings

#: Every settings model read from FETCHFLOW_* variables.
MODELS = (Settings, ImageSettings)

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
PRODUCT_SHOT = Path(__file__).resolve().parents[1] / "flows" / "product_shot.yaml"
_ASSIGNMENT = re.compile(r"^#?\s*(FETCHFLOW_[A-Z0-9_]+)=")


def documented_variables() -> dict[str, list[str]]:
    """Each FETCHFLOW_ variable in .env.example, with the comment lines just above it."""
    found: dict[str, list[str]] = {}
    comment: list[str] = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            found[match.group(1)] = comment
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return found


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    expected = {f"FETCHFLOW_{name.upper()}" for model in MODELS for name in model.model_fields}
    documented = set(documented_variables())
    assert sorted(expected - documented) == [], "add these to .env.example"
    assert sorted(documented - expected) == [], "remove these from .env.example"


def test_env_example_explains_each_setting() -> None:
    undocumented = [name for name, comment in documented_variables().items() if not comment]
    assert undocumented == []


def test_env_example_shows_the_boto3_variables() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID"):
        assert f"# {name}=" in text


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_field_has_a_description(model: type[Settings | ImageSettings]) -> None:
    assert [name for name, info in model.model_fields.items() if not info.description] == []


def test_the_engine_settings_name_no_image_setting() -> None:
    assert set(Settings.model_fields).isdisjoint(ImageSettings.model_fields)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FETCHFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


@pytest.mark.usefixtures("clean_env")
def test_store_and_spool_default_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().store == str(Path(".fetchflow") / "assets")
    assert Settings().spool_dir == Path(".fetchflow") / "spool"
    monkeypatch.setenv("FETCHFLOW_HOME", "/srv/ff")
    assert (Settings().store, Settings().spool_dir) == ("/srv/ff/assets", Path("/srv/ff/spool"))
    monkeypatch.setenv("FETCHFLOW_STORE", "s3://bucket/prefix")
    assert Settings().store == "s3://bucket/prefix"


@pytest.mark.usefixtures("clean_env")
def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FETCHFLOW_STORE=s3://from-dotenv\n")
    assert Settings().store == "s3://from-dotenv"


@pytest.mark.usefixtures("clean_env")
def test_presign_expiry_is_capped_at_seven_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCHFLOW_PRESIGN_EXPIRY_SECONDS", str(PRESIGN_MAX_SECONDS))
    assert Settings().presign_expiry_seconds == 604800
    monkeypatch.setenv("FETCHFLOW_PRESIGN_EXPIRY_SECONDS", str(PRESIGN_MAX_SECONDS + 1))
    with pytest.raises(ValidationError, match="less than or equal to 604800"):
        Settings()


@pytest.mark.usefixtures("clean_env")
def test_image_settings_are_read_from_the_environment_and_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert image_settings().provider_attempts == 4
    (tmp_path / ".env").write_text("FETCHFLOW_MAX_REFERENCE_BYTES=2048\n")
    monkeypatch.setenv("FETCHFLOW_PROVIDER_ATTEMPTS", "2")
    assert (image_settings().provider_attempts, image_settings().max_reference_bytes) == (2, 2048)


@pytest.mark.usefixtures("clean_env")
def test_a_bad_image_setting_is_one_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FETCHFLOW_PROVIDER_ATTEMPTS", "0")
    with pytest.raises(SettingsInvalid) as caught:
        image_settings()
    assert str(caught.value).startswith("setting FETCHFLOW_PROVIDER_ATTEMPTS: ")
    assert "\n  hint: " in str(caught.value)


@pytest.mark.usefixtures("clean_env")
def test_a_bad_image_setting_refuses_the_run_with_exit_2_before_any_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fetchflow.cli import main

    monkeypatch.setenv("FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS", "-1")
    assert main(["run", "--dry-run", str(PRODUCT_SHOT)]) == 2
    assert capsys.readouterr().err == (
        "fetchflow: setting FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS: must be greater than 0; "
        'got "-1"\n  hint: use a value > 0.0\n'
    )
