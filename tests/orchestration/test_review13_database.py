"""``fetchflow server --database``: a password is never shown, however it is written.

Review 13: a password holding an unencoded ``#``, ``/`` or ``?`` cut the URL short, so the
redaction (by ``urlsplit``) found no password and the message printed the URL whole; a
``?password=`` query parameter (read by libpq and asyncpg) was printed as given. Each is
refused or shown here through the real CLI, before any server starts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from fetchflow.orchestration.database import redact, secrets

REPO = Path(__file__).resolve().parents[2]
SECRET = "Zq7-not-for-your-eyes"


def fetchflow(env: Mapping[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


ENCODE_HINT = (
    "  hint: encode it: python3 -c 'import getpass, urllib.parse; "
    'print(urllib.parse.quote(getpass.getpass(), safe=""))\'; or leave the password out '
    "of the URL and set PGPASSWORD"
)


@pytest.mark.parametrize("char", ["#", "/", "?"])
@pytest.mark.parametrize("source", ["--database", "FETCHFLOW_DATABASE_URL"])
def test_a_password_with_an_unencoded_character_is_refused_without_showing_it(
    char: str, source: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    url = f"postgresql+asyncpg://fetchflow:ab{char}{SECRET}@db.example:5432/prefect"
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    args = ["server", "--database", url] if source == "--database" else ["server"]
    if source != "--database":
        env[source] = url

    done = fetchflow(env, tmp_path, *args)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"fetchflow: {source}: 'postgresql+asyncpg://fetchflow:***@db.example:5432/prefect': "
        "the password holds a character that must be percent-encoded in a URL "
        "(# / ? as %23 %2F %3F)",
        ENCODE_HINT,
    ]
    assert SECRET not in done.stderr
    assert not (tmp_path / "home" / "prefect").exists(), "no server was started"


def test_a_password_in_the_query_is_hidden(tmp_path: Path, clean_env: Mapping[str, str]) -> None:
    url = f"mysql://fetchflow@db.example/prefect?sslmode=require&password={SECRET}&x=1"
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}

    done = fetchflow(env, tmp_path, "server", "--database", url)

    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "fetchflow: --database: 'mysql://fetchflow@db.example/prefect?sslmode=require&"
        "password=***&x=1' is not a PostgreSQL URL"
    )
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://u:p@ss:w%2Fd@h:5432/db", "postgresql+asyncpg://u:***@h:5432/db"),
        (
            "postgresql+asyncpg://u:a#b/c?d@[::1]:5432/db",
            "postgresql+asyncpg://u:***@[::1]:5432/db",
        ),
        ("postgresql+asyncpg://u@h/db?PASSWORD=x%23y", "postgresql+asyncpg://u@h/db?PASSWORD=***"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_redact_hides_every_form_of_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    for secret in secrets(url):
        assert secret not in shown
