"""The local Prefect server: its environment, finding it, and one real server end to end.

Finding a server is tested against small real HTTP servers on 127.0.0.1 (one healthy, one
that never answers); the end-to-end test runs ``serve_forever`` in a subprocess, the way
``fetchflow server`` does, and stops it with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fetchflow.orchestration.server import (
    ServerError,
    ServerInfo,
    run_url,
    running_server,
    server_environment,
    server_state_file,
    start_server,
)
from fetchflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_state(settings: Settings, api_url: str, pid: int | None = 1) -> Path:
    path = server_state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    ui_url = api_url.removesuffix("/api") + "/v2"
    path.write_text(json.dumps({"api_url": api_url, "ui_url": ui_url, "pid": pid}))
    return path


class HealthHandler(BaseHTTPRequestHandler):
    """Answers ``/api/health`` like Prefect does."""

    def do_GET(self) -> None:
        body = b"true" if self.path == "/api/health" else b"{}"
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def healthy_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def silent_api() -> Iterator[str]:
    """A port that accepts connections and never answers (a busy server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"


# -- pure parts -------------------------------------------------------------------------------


def test_server_environment_points_the_ui_at_this_port(settings: Settings) -> None:
    env = server_environment(
        settings,
        host="127.0.0.1",
        port=4321,
        environ={"PREFECT_API_URL": "http://elsewhere/api", "PATH": "/bin", "PREFECT_HOME": "x"},
    )
    assert env["PREFECT_HOME"] == str(settings.prefect_home.resolve())
    assert env["PREFECT_SERVER_API_PORT"] == "4321"
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "PREFECT_API_URL" not in env
    assert env["PATH"] == "/bin"


def test_server_environment_brackets_ipv6_hosts(settings: Settings) -> None:
    env = server_environment(settings, host="::1", port=4200, environ={})
    assert env["PREFECT_UI_API_URL"] == "http://[::1]:4200/api"


def test_run_url() -> None:
    assert (
        run_url("http://127.0.0.1:4200/v2/", "6d18ac14")
        == "http://127.0.0.1:4200/v2/runs/flow-run/6d18ac14"
    )


# -- finding a server -------------------------------------------------------------------------


def test_no_state_file_no_server(settings: Settings) -> None:
    assert running_server(settings) is None


def test_a_healthy_server_is_found(settings: Settings, healthy_api: str) -> None:
    write_state(settings, healthy_api, pid=1234)
    assert running_server(settings) == ServerInfo(
        healthy_api, healthy_api.removesuffix("/api") + "/v2", 1234
    )


def test_a_gone_server_s_state_file_is_removed(settings: Settings) -> None:
    path = write_state(settings, f"http://127.0.0.1:{free_port()}/api")
    assert running_server(settings) is None
    assert not path.exists()


def test_a_slow_server_keeps_its_state_file(settings: Settings, silent_api: str) -> None:
    path = write_state(settings, silent_api)
    started = time.monotonic()
    assert running_server(settings, timeout=0.3) is None
    assert time.monotonic() - started < 2
    assert path.exists()


@pytest.mark.parametrize(
    "content", ["{not json", '{"api_url": 1}', "[]", '{"api_url": "x"}'], ids=str
)
def test_an_unreadable_state_file_is_removed(settings: Settings, content: str) -> None:
    path = server_state_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert running_server(settings) is None
    assert not path.exists()


def test_a_taken_port_is_refused_before_anything_starts(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=rf"port {port}; choose another: .*--port"):
            start_server(settings, port=port)
    assert not server_state_file(settings).exists()


def test_a_second_server_is_refused(settings: Settings, healthy_api: str) -> None:
    write_state(settings, healthy_api, pid=99)
    with pytest.raises(ServerError, match=r"already running: http://127\.0\.0\.1:\d+/v2"):
        start_server(settings, port=free_port())


# -- a real server ----------------------------------------------------------------------------


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def page_status(url: str) -> int:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


@pytest.mark.prefect
def test_fetchflow_server_serves_the_ui_on_its_port_and_ctrl_c_stops_it(
    tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    settings = Settings(home=tmp_path / "home")
    port = free_port()
    env = {**clean_env, "FETCHFLOW_HOME": str(settings.home)}
    script = (
        "import sys; from fetchflow.orchestration.server import serve_forever; "
        "from fetchflow.settings import Settings; "
        "sys.exit(serve_forever(Settings(), port=int(sys.argv[1])))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        info = running_server(settings)
        while info is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            info = running_server(settings)
        assert info is not None, f"no server; exit code {process.poll()}"
        assert info.api_url == f"http://127.0.0.1:{port}/api"
        assert info.ui_url == f"http://127.0.0.1:{port}/v2"

        ui_settings = get_json(f"http://127.0.0.1:{port}/ui-settings")
        assert isinstance(ui_settings, dict)
        assert ui_settings["api_url"] == info.api_url  # not port 4200
        assert page_status(run_url(info.ui_url, "00000000-0000-0000-0000-000000000000")) == 200
        assert (settings.prefect_home / "prefect.db").is_file()
        with pytest.raises(ServerError, match="already running"):
            start_server(settings, port=free_port())
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert f"Prefect UI   http://127.0.0.1:{port}/v2" in stderr
    assert "Ctrl-C stops it" in stderr
    assert not server_state_file(settings).exists()
    assert running_server(settings) is None
    with pytest.raises(OSError):
        get_json(f"http://127.0.0.1:{port}/api/health")


def test_sigterm_stops_like_ctrl_c_and_handlers_are_put_back() -> None:
    from fetchflow.orchestration.server import stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    if before is not signal.SIG_DFL:
        pytest.skip("SIGTERM already has a handler here (it would not be replaced)")
    restore = stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before
