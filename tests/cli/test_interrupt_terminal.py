"""Ctrl-C in a terminal, with no Prefect server running: the whole process group gets SIGINT.

Without ``PREFECT_API_URL`` a run starts Prefect's temporary server itself. A terminal's
Ctrl-C reaches every process of the foreground group, so that server must not be in it: the
run has to stop gracefully (keep what it paid for, end ``interrupted``), not hang on a dead
server. And a run killed outright leaves no server behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

FLOW = Path(__file__).resolve().parents[1] / "data" / "interrupt" / "three_gemini.yaml"


def start(box: Sandbox) -> subprocess.Popen[str]:
    env = {k: v for k, v in box.env.items() if k != "PREFECT_API_URL"}
    env["FETCHFLOW_PROVIDER_CONCURRENCY"] = "1"  # one call in flight when Ctrl-C comes
    return subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "run", str(FLOW)],
        env=env,
        cwd=box.tmp / "cwd",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,  # a terminal's foreground group, of its own
    )


def server_of(process: subprocess.Popen[str], box: Sandbox) -> psutil.Process:
    """The run's temporary Prefect server, once its first provider call is in flight."""
    deadline = time.monotonic() + 180
    while not box.gemini.requests:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended before its first call:\n{out}\n{err}")
        assert time.monotonic() < deadline, "the first call never came"
        time.sleep(0.05)
    children = psutil.Process(process.pid).children(recursive=True)
    (server,) = [child for child in children if "uvicorn" in " ".join(child.cmdline())]
    return server


def gone(server: psutil.Process, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not server.is_running() or server.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.prefect
def test_ctrl_c_to_the_whole_group_stops_the_run_gracefully(sandbox: Sandbox) -> None:  # noqa: F811
    sandbox.gemini.queue_slow(3.0)
    process = start(sandbox)
    server = server_of(process, sandbox)
    assert os.getsid(server.pid) != os.getsid(process.pid)  # out of the terminal's group

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
    _, err = process.communicate(timeout=120)

    assert process.returncode == 130, err
    assert len(sandbox.gemini.requests) == 1  # the call in flight finished, none started
    lines = err.splitlines()
    assert (
        'interrupted (SIGINT): kept 1 file(s) made by step "hero"; not finished: hero, note'
    ) in lines
    assert lines[-1].startswith(f"resume it: fetchflow run {FLOW} --resume ")
    assert gone(server, within=15)  # the run stopped its server on the way out


@pytest.mark.prefect
def test_a_run_killed_outright_leaves_no_server_behind(sandbox: Sandbox) -> None:  # noqa: F811
    sandbox.gemini.queue_slow(30.0)
    process = start(sandbox)
    server = server_of(process, sandbox)

    process.kill()  # SIGKILL: no atexit, no handler
    process.communicate(timeout=30)

    assert gone(server, within=15)
