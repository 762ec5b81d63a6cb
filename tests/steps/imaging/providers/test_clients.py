"""One SDK client per provider, key and base URL per process; the SDK imported at preflight.

The steps of a real flow run (the session's Prefect server) call the fake Gemini server
through the real ``google-genai`` SDK; :func:`~steps.imaging.providers.clients.clients_made`
counts the clients the process made. The preflight import is watched in a fresh interpreter,
where nothing has imported an SDK yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI

from fetchflow.registry import StepRegistry
from fetchflow.run.report import RunReport
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from steps.imaging.providers.clients import clients_made
from steps.imaging.providers.google_images import GeminiProvider
from steps.imaging.providers.openai_images import OpenAIProvider

fake_gemini = fixtures.fake_gemini
fake_openai = fixtures.fake_openai

REPO = Path(__file__).resolve().parents[4]
FLOW = REPO / "tests" / "data" / "clients" / "two_gemini_steps.yaml"
KEY = "AIzaTestSECRETclients0123456789"
OTHER_KEY = "AIzaTestSECRETclientsOTHER98765"


@pytest.fixture(autouse=True)
def clean_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No key, base URL or setting of the machine's; no ``.env`` read."""
    scrub_environ(monkeypatch)
    for name in fixtures.PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def run_flow(home: Path) -> RunReport:
    from fetchflow.orchestration.runner import run_plan

    plan = check_file(FLOW, StepRegistry.from_entry_points())
    settings = Settings(home=home, store=str(home / "assets"))
    return run_plan(plan, resolve_inputs(plan.header, {}), settings=settings, drain=False)


@pytest.mark.prefect
def test_the_steps_of_a_run_share_one_client_and_a_new_key_gets_its_own(
    prefect_api: str,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    before = clients_made("google")

    report = run_flow(tmp_path / "one")

    assert report.status == "completed", report.message
    assert len(fake_gemini.requests) == 4  # hero's two images, banner's and detail's
    assert clients_made("google") == before + 1  # three steps, one client
    assert {r.credential for r in fake_gemini.requests} == {KEY}

    # A second run in the same process: still that client.
    assert run_flow(tmp_path / "two").status == "completed"
    assert clients_made("google") == before + 1

    # Another key: a client of its own, which sends that key.
    monkeypatch.setenv("GEMINI_API_KEY", OTHER_KEY)
    assert run_flow(tmp_path / "three").status == "completed"
    assert clients_made("google") == before + 2
    assert {r.credential for r in fake_gemini.requests[8:]} == {OTHER_KEY}


def test_another_base_url_gets_its_own_client_and_a_step_timeout_leaves_it_shared(
    fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    before = clients_made()
    gemini = [GeminiProvider(KEY, fake_gemini.base_url, timeout=t) for t in (120.0, 5.0)]
    openai = [OpenAIProvider("sk-test", fake_openai.base_url, timeout=t) for t in (120.0, 5.0)]
    assert clients_made() == before + 2  # one per provider, whatever the timeouts

    with FakeGemini() as elsewhere:
        GeminiProvider(KEY, elsewhere.base_url)
        assert clients_made() == before + 3
    # Each provider keeps its own timeout on the shared pool.
    assert openai[0]._client.timeout == 120.0 and openai[1]._client.timeout == 5.0
    assert openai[0]._client._client is openai[1]._client._client
    assert gemini[0]._client is gemini[1]._client


SCRIPT = """
import sys
from pathlib import Path

from fetchflow.registry import StepRegistry
from fetchflow.run.preflight import preflight
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file

plan = check_file(Path(sys.argv[1]), StepRegistry.from_entry_points())
loaded = "google.genai" in sys.modules
preflight(plan, Settings(home=Path(sys.argv[2]), store=sys.argv[2] + "/assets"))
print(loaded, "google.genai" in sys.modules, "openai" in sys.modules)
"""


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gemini-2.5-flash-image", "False True False"), ("auto", "False True False")],
)
def test_preflight_imports_the_sdk_of_the_model_the_step_will_run(
    model: str, expected: str, tmp_path: Path
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW.read_text("utf-8").replace("gemini-2.5-flash-image", model), "utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in fixtures.PROVIDER_VARIABLES and not key.startswith("FETCHFLOW_")
    }
    env["GEMINI_API_KEY"] = KEY  # the only key: auto picks Gemini

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(flow), str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    # Not loaded by checking the file; loaded by preflight, before any step runs.
    assert done.stdout.split() == expected.split()
    assert KEY not in done.stdout + done.stderr
