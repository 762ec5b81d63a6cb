"""Settings: .env.example documents every field, and the storage defaults follow FETCHFLOW_HOME."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from fetchflow.settings import PRESIGN_MAX_SECONDS, Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
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
    expected = {f"FETCHFLOW_{name.upper()}" for name in Settings.model_fields}
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


def test_every_field_has_a_description() -> None:
    assert [name for name, info in Settings.model_fields.items() if not info.description] == []


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
