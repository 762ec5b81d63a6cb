"""Bad input on the command line and in the settings: one message, exit 2, nothing run.

Through the real command (``python -m fetchflow.cli``) in the catalogue's sandbox, where every
key points at the fake providers. Each case checks the exact message and hint, the exit code
2, and that nothing happened: no provider request, no write, Prefect never imported.

- ``--budget`` and ``budget_usd`` must be a finite amount above 0 (nan, inf and negatives
  would switch the budget guard off); a number ``--input`` must be finite;
- ``--resume`` of an unknown or malformed id, of another workflow's run, or of an unreadable
  record is a mistake on the command line;
- a ``PREFECT_API_URL`` nothing answers at (a stopped ``fetchflow server``), or that is no
  http(s) URL, and a ``FETCHFLOW_STORE`` that cannot be used are settings problems.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    Case,
    Sandbox,
    expected_stderr,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "catalogue" / "cli"
BILLABLE = DATA / "billable.yaml"
OTHER_RUN = "0b9f3c1e-5d2a-4c4b-9d7e-2f1a6b8c9d00"
SAME_RUN = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"

# -- --budget and budget_usd -----------------------------------------------------------------

BUDGET_HINT = "give the most the run may cost, e.g. --budget 2.50 (or leave it out)"

BUDGET_FLAG_CASES = {
    "nan": "not finite",
    "NaN": "not finite",
    "inf": "not finite",
    "-inf": "not finite",
    "1e400": "not finite",
    "-1": "not above 0",
    "0": "not above 0",
    "-0.0": "not above 0",
    "abc": "not a number",
    "": "not a number",
}


@pytest.mark.parametrize("value", list(BUDGET_FLAG_CASES), ids=lambda v: v or "empty")
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_budget_flag_that_is_not_a_finite_amount_above_0_is_refused(
    sandbox: Sandbox,  # noqa: F811
    value: str,
    dry_run: bool,
) -> None:
    args = ["run", str(BILLABLE), f"--budget={value}", *(["--dry-run"] if dry_run else [])]
    outcome = sandbox.fetchflow(*args)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == [
        f"--budget: expected an amount of US dollars above 0, got {value!r} "
        f"({BUDGET_FLAG_CASES[value]})",
        f"  hint: {BUDGET_HINT}",
    ]
    sandbox.assert_nothing_happened(outcome)


BUDGET_FILE_CASES = {
    "budget_inf": Case(
        '3:1: field "budget_usd": must be a finite amount of US dollars, got inf',
        "give the most a run may cost, e.g. budget_usd: 2.50, or remove it",
    ),
    "budget_nan": Case(
        '3:1: field "budget_usd": must be greater than 0; got NaN', "use a value > 0.0"
    ),
    "budget_negative": Case(
        '3:1: field "budget_usd": must be greater than 0; got -1', "use a value > 0.0"
    ),
    "number_default_nan": Case(
        '4:25: input "scale" field "default": default does not match type number: expected a '
        "number, got NaN",
        "give a default of type number, or change the type",
    ),
}


@pytest.mark.parametrize("name", list(BUDGET_FILE_CASES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_budget_usd_or_number_default_that_is_not_finite_is_refused(
    sandbox: Sandbox,  # noqa: F811
    name: str,
    command: str,
) -> None:
    path = DATA / f"{name}.yaml"
    outcome = sandbox.fetchflow(command, str(path))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(
        path, BUDGET_FILE_CASES[name], lines, summary=command == "validate"
    )
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_number_input_that_is_not_finite_is_refused(
    sandbox: Sandbox,  # noqa: F811
    value: str,
) -> None:
    outcome = sandbox.fetchflow("run", str(BILLABLE), "--input", f"scale={value}")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f'--input: input "scale": expected a finite number, got {value!r}',
        "  hint: give scale a value of type number",
    ]
    sandbox.assert_nothing_happened(outcome)


# -- --resume --------------------------------------------------------------------------------


def save_run_record(box: Sandbox, run_id: str, workflow: str, file: str) -> Path:
    """A run's record in the store, as ``fetchflow run`` writes it when the run starts."""
    path = box.store / "runs" / run_id / "run.json"
    path.parent.mkdir(parents=True)
    document = {
        "fetchflow_state": 1,
        "kind": "run",
        "workflow": workflow,
        "file": file,
        "inputs": {},
        "run_id": run_id,
        "status": "interrupted",
        "started_at": "2026-11-30T10:00:00+00:00",
        "fingerprints": {},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def save_other_run(box: Sandbox) -> Path:
    """A run of another workflow in the store."""
    return save_run_record(box, OTHER_RUN, "not billable", "flows/other.yaml")


def test_resume_of_an_unknown_run_exits_2_with_a_hint(sandbox: Sandbox) -> None:  # noqa: F811
    save_other_run(sandbox)
    save_run_record(sandbox, SAME_RUN, "billable", str(BILLABLE))
    outcome = sandbox.fetchflow("run", str(BILLABLE), "--resume", "3f2b1c0d-nope")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: no run '3f2b1c0d-nope' in the asset store {sandbox.store.resolve()}",
        "  hint: resume a run that wrote to this store (the same FETCHFLOW_STORE, on any "
        f"machine); latest runs of billable: {SAME_RUN}",
    ]
    assert outcome.prefect_modules == []
    assert sandbox.openai.requests == []


@pytest.mark.parametrize("run_id", ["../runs/x", "a/b", "", ".hidden", "x" * 101, "id with space"])
def test_resume_of_a_malformed_id_exits_2_and_reads_no_path(
    sandbox: Sandbox,  # noqa: F811
    run_id: str,
) -> None:
    outcome = sandbox.fetchflow("run", str(BILLABLE), f"--resume={run_id}")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: --resume {run_id!r} is not a run id",
        "  hint: give the id fetchflow run printed (▶ workflow · run <id>); latest runs of "
        "billable: none yet",
    ]
    sandbox.assert_nothing_happened(outcome)


def test_resume_of_another_workflows_run_exits_2(sandbox: Sandbox) -> None:  # noqa: F811
    save_other_run(sandbox)
    outcome = sandbox.fetchflow("run", str(BILLABLE), "--resume", OTHER_RUN)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: run {OTHER_RUN} was a run of workflow 'not billable', not 'billable'",
        "  hint: resume it with its own workflow file (flows/other.yaml)",
    ]
    assert outcome.prefect_modules == []
    assert sandbox.openai.requests == []


def test_resume_of_an_unreadable_record_exits_2_not_internal_error(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = save_other_run(sandbox)
    path.write_text('{"workflow": "billable", "steps": {', encoding="utf-8")
    outcome = sandbox.fetchflow("run", str(BILLABLE), "--resume", OTHER_RUN)

    assert outcome.code == 2, outcome.stderr
    lines = outcome.stderr.splitlines()
    assert lines == [
        f"fetchflow: the checkpoints of run {OTHER_RUN} cannot be read: {path.resolve()} is "
        "not a fetchflow state document (not a JSON object)",
        "  hint: delete it; fetchflow writes it again when the run or step next runs",
    ]
    assert "internal error" not in outcome.stderr
    assert sandbox.openai.requests == []


# -- settings: PREFECT_API_URL and FETCHFLOW_STORE -------------------------------------------

SERVER_HINT = (
    "  hint: start the server (fetchflow server, or prefect server start), or unset "
    "PREFECT_API_URL to run on a temporary one"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", [["run"], ["run", "--json"]], ids=["run", "json"])
def test_a_stopped_prefect_server_is_a_settings_error_before_any_call(
    sandbox: Sandbox,  # noqa: F811
    command: list[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # what a stopped `fetchflow server` leaves
    sandbox.env["PREFECT_API_URL"] = url
    outcome = sandbox.fetchflow(command[0], str(BILLABLE), *command[1:])

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: PREFECT_API_URL={url!r}: no Prefect server answers: nothing listens "
        "there (connection refused)",
        SERVER_HINT,
    ]
    if "--json" in command:
        document = json.loads(outcome.stdout)
        assert (document["run_id"], document["status"]) == (None, "failed")
        assert document["error"].startswith(f"PREFECT_API_URL={url!r}: no Prefect server")
    sandbox.assert_nothing_happened(outcome)


def test_approve_against_a_stopped_prefect_server_is_a_settings_error(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    sandbox.env["PREFECT_API_URL"] = url
    outcome = sandbox.fetchflow("approve", OTHER_RUN)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines()[1:] == [SERVER_HINT]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("localhost:4200", "is not an http(s) URL"),
        ("ftp://127.0.0.1/api", "is not an http(s) URL"),
        ("http:///api", "is not an http(s) URL"),
        ("http://no-such-host.invalid/api", "unknown host"),
    ],
)
def test_a_prefect_api_url_that_cannot_work_is_a_settings_error(
    sandbox: Sandbox,  # noqa: F811
    url: str,
    found: str,
) -> None:
    sandbox.env["PREFECT_API_URL"] = url
    outcome = sandbox.fetchflow("run", str(BILLABLE))

    assert outcome.code == 2, outcome.stderr
    first, hint = outcome.stderr.splitlines()
    assert first.startswith(f"fetchflow: PREFECT_API_URL={url!r}")
    assert found in first
    assert hint.startswith("  hint: ") and "unset" in hint
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(
    ("store", "lines"),
    [
        (
            "s3://",
            [
                "fetchflow: FETCHFLOW_STORE='s3://' is not a usable S3 location: 's3://' names "
                "no bucket",
                "  hint: use s3://bucket or s3://bucket/some/prefix",
            ],
        ),
        (
            "ftp://host/assets",
            [
                "fetchflow: FETCHFLOW_STORE='ftp://host/assets': ftp:// stores are not supported",
                "  hint: set FETCHFLOW_STORE to s3://bucket/prefix or to a folder path",
            ],
        ),
    ],
    ids=["no-bucket", "ftp"],
)
@pytest.mark.parametrize("command", [["run", str(BILLABLE)], ["push"]], ids=["run", "push"])
def test_a_store_setting_that_cannot_work_is_a_settings_error(
    sandbox: Sandbox,  # noqa: F811
    store: str,
    lines: list[str],
    command: list[str],
) -> None:
    sandbox.env["FETCHFLOW_STORE"] = store
    outcome = sandbox.fetchflow(*command)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == lines
    sandbox.assert_nothing_happened(outcome)


def test_a_store_folder_that_is_a_file_is_a_settings_error(sandbox: Sandbox) -> None:  # noqa: F811
    taken = sandbox.tmp / "a-file"
    taken.write_text("not a folder", encoding="utf-8")
    sandbox.env["FETCHFLOW_STORE"] = str(taken)
    outcome = sandbox.fetchflow("run", str(BILLABLE))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: local asset store {taken} is not writable: File exists",
        f"  hint: make {taken} a writable folder, or set FETCHFLOW_STORE to a writable folder "
        "(or s3://bucket/prefix)",
    ]
    sandbox.assert_nothing_happened(outcome)


# -- other command-line values and FETCHFLOW_HOME ----------------------------------------------


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_a_server_port_out_of_range_exits_2_before_starting_anything(
    sandbox: Sandbox,  # noqa: F811
    port: str,
) -> None:
    outcome = sandbox.fetchflow("server", f"--port={port}")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"--port: expected a port number from 1 to 65535, got {port}",
        "  hint: leave --port out for 4200, or give a free port such as 4201",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_serve_limit_below_1_exits_2(sandbox: Sandbox, limit: str) -> None:  # noqa: F811
    outcome = sandbox.fetchflow("serve", str(BILLABLE), f"--limit={limit}")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"--limit: expected at least 1 flow run at a time, got {limit}",
        "  hint: leave --limit out for Prefect's default (5), or give --limit 1 or more",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(
    "command",
    [["run", str(BILLABLE)], ["push"], ["approve", OTHER_RUN], ["server", "--port", "4999"]],
    ids=["run", "push", "approve", "server"],
)
def test_a_home_that_is_a_file_is_a_settings_error_not_an_internal_error(
    sandbox: Sandbox,  # noqa: F811
    command: list[str],
) -> None:
    home = sandbox.tmp / "home-file"
    home.write_text("not a folder", encoding="utf-8")
    sandbox.env["FETCHFLOW_HOME"] = str(home)
    outcome = sandbox.fetchflow(*command)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: setting FETCHFLOW_HOME: {home} cannot be used as fetchflow's folder: File "
        "exists",
        "  hint: set FETCHFLOW_HOME to a folder you can write (default: .fetchflow in the "
        "current directory)",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.prefect
@pytest.mark.parametrize(
    ("run_id", "lines"),
    [
        (
            "not-a-uuid",
            [
                "fetchflow: 'not-a-uuid' is not a run id",
                "  hint: copy the run id fetchflow run printed",
            ],
        ),
        (
            OTHER_RUN,
            [
                f"fetchflow: no run {OTHER_RUN} on the Prefect server at {{api}}",
                "  hint: copy the id fetchflow run printed, and answer on the server the run "
                "runs on",
            ],
        ),
    ],
    ids=["malformed", "unknown"],
)
def test_approving_a_run_that_is_not_there_exits_2(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
    run_id: str,
    lines: list[str],
) -> None:
    sandbox.env["PREFECT_API_URL"] = prefect_api
    outcome = sandbox.fetchflow("approve", run_id)

    assert outcome.code == 2, outcome.stderr
    api = prefect_api.rstrip("/") + "/"
    assert outcome.stderr.splitlines() == [line.format(api=api) for line in lines]
    assert "internal error" not in outcome.stderr


def test_a_prefect_api_url_that_answers_with_a_web_page_is_a_settings_error(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class WebPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>Prefect</title>")

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), WebPage) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"  # /api left out
        sandbox.env["PREFECT_API_URL"] = url
        outcome = sandbox.fetchflow("run", str(BILLABLE))
        server.shutdown()

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: PREFECT_API_URL={url!r} answers, but not as a Prefect API (GET "
        f"{url}/health gave b'<!doctype html><title>Prefect</title>')",
        "  hint: point it at the server's API, which ends in /api (http://127.0.0.1:4200/api)",
    ]
    sandbox.assert_nothing_happened(outcome)
