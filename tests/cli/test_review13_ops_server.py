"""``fetchflow server``'s ports (review 13).

``--files-port`` equal to ``--port`` was found only when the Prefect server could not bind,
blamed on "another program" (exit 1). ``--port 65535`` asked for the files on port 65536:
"internal error: OverflowError" after "starting Prefect server"; a taken 65535 suggested
``--port 65536``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


def test_the_files_port_cannot_be_the_server_s_port(
    tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}

    done = fetchflow(env, tmp_path, "server", "--port", "4567", "--files-port", "4567")

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "--files-port: 4567 is the --port of the Prefect server; the files need a port of "
        "their own",
        "  hint: leave --files-port out for --port + 1, or give another free port",
    ]
    assert not (tmp_path / "home" / "prefect").exists()


def test_the_last_port_serves_its_files_on_a_free_one(
    tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    with socket.socket() as taken:  # the server's own port is taken: it stops right there
        try:
            taken.bind(("127.0.0.1", 65535))
        except OSError:
            pytest.skip("port 65535 is in use on this machine")
        taken.listen(1)

        done = fetchflow(env, tmp_path, "server", "--port", "65535")

    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[1:] == [
        "fetchflow: cannot start the Prefect server on 127.0.0.1:65535: Address already in use",
        "  hint: another program uses port 65535; choose another: fetchflow server --port 65533",
    ]


@pytest.mark.prefect
def test_the_store_s_files_stay_on_loopback_when_the_server_listens_everywhere(
    tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    import json
    import signal
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tmp_path / "home"
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "server", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (home / "server.json").is_file():
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server never wrote server.json"
            time.sleep(0.2)
        state = json.loads((home / "server.json").read_text(encoding="utf-8"))
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)

    assert state["files_url"].startswith("http://127.0.0.1:")  # never every address
