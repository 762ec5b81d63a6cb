"""Provider answers through the real command: ``python -m fetchflow.cli run`` in a subprocess.

The catalogue's sandbox points every key and base URL at the fake OpenAI and Gemini servers;
these runs talk to the session's Prefect server. For each case the number of requests the
fake received is the number of calls a user pays for:

- a provider error that used up ``FETCHFLOW_PROVIDER_ATTEMPTS`` is not retried again by the
  step's ``retries`` (one owner for provider retries): a persistent 500 costs exactly the
  attempts, whatever ``retries`` says;
- a 200 that is not the API's JSON (an HTML page from a wrong base URL) is one request, an
  error naming the step, endpoint, status, content type and body, and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_bad_input_catalogue as catalogue
from test_bad_input_catalogue import Sandbox

# The catalogue's fixtures, used by name.
fake_openai = catalogue.fake_openai
fake_gemini = catalogue.fake_gemini
probe_dir = catalogue.probe_dir
sandbox = catalogue.sandbox

pytestmark = pytest.mark.prefect

DATA = Path(__file__).resolve().parents[1] / "data" / "catalogue" / "providers"
ATTEMPTS = 4


def run(sandbox: Sandbox, prefect_api: str, name: str) -> tuple[int, str, dict[str, object]]:
    """``fetchflow run FILE --json`` with 4 provider attempts and short waits."""
    sandbox.env["PREFECT_API_URL"] = prefect_api
    sandbox.env["FETCHFLOW_PROVIDER_ATTEMPTS"] = str(ATTEMPTS)
    sandbox.env["FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS"] = "0.05"
    outcome = sandbox.fetchflow("run", str(DATA / f"{name}.yaml"), "--json")
    assert "Traceback" not in outcome.stderr, outcome.stderr
    report = json.loads(outcome.stdout) if outcome.stdout.strip() else {}
    return outcome.code, outcome.stderr, report


def hero_step(report: dict[str, object]) -> dict[str, object]:
    steps = report["steps"]
    assert isinstance(steps, dict)
    return dict(steps["hero"])


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_a_persistent_500_with_step_retries_costs_exactly_the_provider_attempts(
    provider: str, sandbox: Sandbox, prefect_api: str
) -> None:
    fake = sandbox.openai if provider == "openai" else sandbox.gemini
    for _ in range(3 * ATTEMPTS):  # enough for every attempt of every step retry
        fake.queue_server_error(500)

    code, stderr, report = run(
        sandbox,
        prefect_api,
        "retried_image_step" if provider == "openai" else "retried_gemini_step",
    )

    assert len(fake.requests) == ATTEMPTS  # not 3 x 4: the step's retries add none
    assert code == 1, stderr
    hero = hero_step(report)
    assert hero["status"] == "failed"
    assert f"(gave up after {ATTEMPTS} attempts in " in str(hero["error"])


def test_an_html_page_from_a_wrong_base_url_is_one_request_and_a_clear_error(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.openai.queue_not_json(
        b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>",
        "text/html",
    )

    code, stderr, report = run(sandbox, prefect_api, "retried_image_step")

    assert len(sandbox.openai.requests) == 1  # retries: 2, but a 200 may have been billed
    assert code == 1
    hero = hero_step(report)
    assert hero["status"] == "failed"
    assert hero["error"] == (
        f'step "hero": openai {sandbox.openai.generations_url}: 200 text/html: the answer is '
        "not JSON: <!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>\n"
        "  hint: check that OPENAI_BASE_URL (FETCHFLOW_HOSTED_OPENAI_BASE_URL for "
        "charge_type: hosted) points at the OpenAI API, https://api.openai.com/v1, or a "
        "gateway that answers like it; not retried: the provider answered 200, so the call "
        "may have been billed"
    )
    assert "AttributeError" not in stderr and "sk-catalogue-test-key" not in stderr
