"""Commands that need a Prefect server say so when there is none: exit 2, nothing done."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

HELLO = Path(__file__).resolve().parents[2] / "flows" / "hello.yaml"
HINT = (
    "  hint: start one in another terminal (fetchflow server), then run this again; or set "
    "PREFECT_API_URL to a shared Prefect server"
)


@pytest.mark.parametrize(
    ("args", "purpose"),
    [
        pytest.param(
            ["deploy", str(HELLO), "--pool", "images"], "to deploy the workflows to", id="deploy"
        ),
        pytest.param(["recover"], "to look for crashed runs on", id="recover"),
    ],
)
def test_no_server_is_one_message_and_exit_2(
    sandbox: Sandbox,  # noqa: F811
    args: list[str],
    purpose: str,
) -> None:
    outcome = sandbox.fetchflow(*args)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: no Prefect server {purpose}: PREFECT_API_URL is not set and no "
        "`fetchflow server` is running",
        HINT,
    ]
    assert outcome.prefect_modules == []
