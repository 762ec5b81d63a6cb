"""A local Prefect server with its UI, in one command, and finding it again.

``fetchflow server`` runs ``prefect server start`` (the Prefect CLI of this environment) on
127.0.0.1 with fetchflow's Prefect home, so the UI shows every run fetchflow ever recorded.
Once the server answers, ``<FETCHFLOW_HOME>/server.json`` says where it is;
``fetchflow run`` reads it (:func:`running_server`) and sends its run there: no embedded
server to start, and a link to the run's page. Prefect is not imported here: the server is a
subprocess and the health check is one HTTP request.

Two Prefect details handled here: ``--port`` alone leaves the UI calling the API on port
4200 (``PREFECT_UI_API_URL`` points it at the right port), and Prefect 3.8 serves two UIs,
the default one (``v2``) under ``/v2``: ``ui_url`` is the default UI's address, read from
the server's ``/ui-settings``.

The server's database is the embedded SQLite one in the Prefect home, or PostgreSQL
(``--database``, ``FETCHFLOW_DATABASE_URL``: see :mod:`fetchflow.orchestration.database`),
checked before the server starts; its password never reaches the console, the state file or
an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from fetchflow.errors import ServerError, SettingsInvalid
from fetchflow.orchestration.database import (
    PREFECT_DATABASE_VARIABLE,
    ServerDatabase,
    check_database,
    secrets,
)
from fetchflow.orchestration.file_server import FileServer, start_file_server
from fetchflow.settings import Settings

__all__ = [
    "ServerDatabase",
    "ServerError",
    "ServerInfo",
    "api_refusal",
    "check_prefect_api",
    "run_url",
    "running_server",
    "serve_forever",
    "server_environment",
    "server_log_file",
    "server_state_file",
    "start_server",
    "stop_on_signals",
    "stop_server",
]

DEFAULT_PORT = 4200
DEFAULT_HOST = "127.0.0.1"
#: A cold start with a fresh database takes ~20 s on a small machine.
STARTUP_TIMEOUT_SECONDS = 120.0
#: The local server is never reached through an HTTP proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ServerInfo:
    """Where a running server is.

    Attributes:
        api_url: Its API, for ``PREFECT_API_URL`` (``http://127.0.0.1:4200/api``).
        ui_url: Its default UI (``http://127.0.0.1:4200/v2``); pages hang below it.
        pid: The server's process id, when known.
        database: Its database URL, password hidden (None: the embedded SQLite one).
        files_url: Base URL of the local asset store's file server
            (:mod:`fetchflow.orchestration.file_server`), None when it serves none.
        files_root: The store folder it serves.
    """

    api_url: str
    ui_url: str
    pid: int | None = None
    database: str | None = None
    files_url: str | None = None
    files_root: str | None = None


def server_state_file(settings: Settings) -> Path:
    """Where a running server's address is kept: ``<FETCHFLOW_HOME>/server.json``."""
    return settings.home / "server.json"


def server_log_file(settings: Settings) -> Path:
    """Where the server's own output goes: ``<FETCHFLOW_HOME>/server.log``."""
    return settings.home / "server.log"


def run_url(ui_url: str, run_id: str) -> str:
    """The page of a flow run in the Prefect UI (the same route in both UIs and in Cloud)."""
    return f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}"


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_environment(
    settings: Settings,
    *,
    host: str,
    port: int,
    environ: Mapping[str, str] | None = None,
    database: ServerDatabase | None = None,
) -> dict[str, str]:
    """The environment of ``prefect server start``: fetchflow's Prefect home, the UI
    pointed at this port's API, analytics off, the database (None: the embedded SQLite);
    the rest is the current environment."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PREFECT_API_URL", None)  # the server serves the API; it must not look for one
    env.pop(PREFECT_DATABASE_VARIABLE, None)
    if database is not None:
        env[PREFECT_DATABASE_VARIABLE] = database.url
    env.update(
        {
            "PREFECT_HOME": str(settings.prefect_home.resolve()),
            "PREFECT_SERVER_API_HOST": host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": f"{_base_url(host, port)}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
        }
    )
    return env


def _get(url: str, timeout: float) -> object:
    """The JSON body of a GET; raises on any failure."""
    with _DIRECT.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _healthy(api_url: str, timeout: float) -> bool | None:
    """True when the API answers its health check, False when nothing listens there,
    None when something is there but did not answer in time (or answered oddly)."""
    try:
        return _get(f"{api_url}/health", timeout) is True or None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            return False
        return None
    except ConnectionRefusedError:
        return False
    except (OSError, ValueError):
        return None


def api_refusal(api_url: str, error: BaseException) -> SettingsInvalid | None:
    """The message for an API that refused a request with 4xx (not a Prefect server's API,
    or Prefect Cloud without a key), which :func:`check_prefect_api` lets pass; None for
    any other error."""
    import httpx

    if not isinstance(error, httpx.HTTPStatusError) or not 400 <= error.response.status_code < 500:
        return None
    request = error.request
    return SettingsInvalid(
        f"PREFECT_API_URL={api_url!r} answered {error.response.status_code} "
        f"{error.response.reason_phrase} to {request.method} {request.url.path}: it is not a "
        "Prefect server's API, or it wants a key",
        "point PREFECT_API_URL at a Prefect server's API (http://127.0.0.1:4200/api); for "
        "Prefect Cloud, set PREFECT_API_KEY too",
    )


def check_prefect_api(api_url: str, timeout: float = 5.0) -> None:
    """Check, before anything runs, that ``PREFECT_API_URL`` is a URL that answers.

    Only a URL that cannot work is refused: not http(s), no host, or nothing reachable
    there (refused, unknown host, no answer in ``timeout``). Any HTTP answer passes, as a
    Prefect Cloud workspace may answer the health check with 401 or 404 without a key.

    Raises:
        SettingsInvalid: The URL is malformed or nothing answers there.
    """
    parsed = urllib.parse.urlsplit(api_url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsInvalid(
            f"PREFECT_API_URL={api_url!r} is not an http(s) URL",
            "set it to the API of a running Prefect server (http://127.0.0.1:4200/api), or "
            "unset it to use a temporary one",
        )
    health = f"{api_url.rstrip('/')}/health"
    try:
        with _DIRECT.open(health, timeout=timeout) as response:
            body = response.read(200)
    except urllib.error.HTTPError:
        return  # something answers (Cloud wants a key first): Prefect's client says more
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, ConnectionRefusedError):
            what = "nothing listens there (connection refused)"
        elif isinstance(reason, TimeoutError | socket.timeout):
            what = f"no answer within {timeout:g} s"
        elif isinstance(reason, socket.gaierror):
            what = f"unknown host {parsed.hostname!r}"
        else:
            what = f"cannot connect ({reason})"
        raise SettingsInvalid(
            f"PREFECT_API_URL={api_url!r}: no Prefect server answers: {what}",
            "start the server (fetchflow server, or prefect server start), or unset "
            "PREFECT_API_URL to run on a temporary one",
        ) from None
    if body.strip() != b"true":  # a web page, not the API: typically /api left out
        raise SettingsInvalid(
            f"PREFECT_API_URL={api_url!r} answers, but not as a Prefect API (GET {health} "
            f"gave {body[:60]!r})",
            "point it at the server's API, which ends in /api (http://127.0.0.1:4200/api)",
        )


def running_server(settings: Settings, timeout: float = 0.5) -> ServerInfo | None:
    """The server ``fetchflow server`` started, if it is up and answers within ``timeout``.

    A state file whose server is gone (nothing listens on its port) or that cannot be read
    is removed; a server that is only slow keeps its file.
    """
    path = server_state_file(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("api_url"), str)
        and isinstance(data.get("ui_url"), str)
    ):
        path.unlink(missing_ok=True)
        return None
    pid = data.get("pid")
    database = data.get("database")
    files_url, files_root = data.get("files_url"), data.get("files_root")
    info = ServerInfo(
        data["api_url"],
        data["ui_url"],
        pid if isinstance(pid, int) else None,
        database if isinstance(database, str) else None,
        files_url if isinstance(files_url, str) else None,
        files_root if isinstance(files_root, str) else None,
    )
    health = _healthy(info.api_url, timeout)
    if health is False:
        path.unlink(missing_ok=True)
    return info if health else None


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServerError(
                f"cannot start the Prefect server on {host}:{port}: {error.strerror or error}",
                f"another program uses port {port}; choose another: fetchflow server --port "
                f"{port + 1 if port < 65535 else port - 2}",
            ) from None


def _default_ui(base: str, timeout: float) -> str:
    """The address of the server's default UI (``/v2`` in Prefect 3.8), or ``base``."""
    try:
        found = _get(f"{base}/ui-settings", timeout)
    except (OSError, ValueError):
        return base
    if not isinstance(found, dict):
        return base
    path = found.get(f"{found.get('default_ui')}_base_url")
    return base + path.rstrip("/") if isinstance(path, str) else base


def _tail(path: Path, lines: int = 15, hidden: Sequence[str] = ()) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for secret in hidden:
        text = text.replace(secret, "***")
    return "\n".join(text.strip().splitlines()[-lines:])


def _write_state(path: Path, info: ServerInfo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    state: dict[str, object] = {"api_url": info.api_url, "ui_url": info.ui_url, "pid": info.pid}
    if info.database is not None:
        state["database"] = info.database
    if info.files_url is not None:
        state["files_url"], state["files_root"] = info.files_url, info.files_root
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def start_server(
    settings: Settings,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    *,
    database: ServerDatabase | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    files: FileServer | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``prefect server start`` and wait until it answers; then write the state file.

    The server runs in its own session (Ctrl-C in the terminal reaches fetchflow, which
    stops it: see :func:`serve_forever`); its output goes to :func:`server_log_file`.
    ``database`` is checked first (:func:`~fetchflow.orchestration.database.check_database`);
    None is the embedded SQLite database. ``files``: the local store's file server, noted
    in the state file for runs to link to.

    Raises:
        SettingsInvalid: The database cannot be used (wrong scheme, unreachable, login
            refused).
        ServerError: A server is already running, the port is taken, or the server exited
            or did not answer within ``startup_timeout`` seconds.
    """
    found = running_server(settings)
    if found is not None:
        raise ServerError(
            f"a fetchflow Prefect server is already running: {found.ui_url}",
            "use it, or stop it first (Ctrl-C where it runs"
            + (f", or kill {found.pid})" if found.pid else ")"),
        )
    _check_port_free(host, port)
    if database is not None:
        check_database(database)
    hidden = secrets(database.url) if database is not None else []
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = server_log_file(settings)
    command = [sys.executable, "-m", "prefect", "server", "start"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, "--host", host, "--port", str(port)],
            env=server_environment(settings, host=host, port=port, database=database),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = _base_url(host, port)
    deadline = time.monotonic() + startup_timeout
    try:
        while not _healthy(f"{base}/api", 1.0):
            if process.poll() is not None:
                raise ServerError(
                    f"the Prefect server exited with code {process.returncode} before it "
                    f"answered; its last lines:\n{_tail(log_path, hidden=hidden)}",
                    f"see {log_path}",
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"the Prefect server did not answer within {startup_timeout:.0f} s",
                    f"see {log_path}; a first start creates the database and is the slowest",
                )
            time.sleep(0.25)
        info = ServerInfo(
            f"{base}/api",
            _default_ui(base, 5.0),
            process.pid,
            database.display() if database is not None else None,
            files.url if files is not None else None,
            str(files.root) if files is not None else None,
        )
        _write_state(server_state_file(settings), info)
    except BaseException:
        _terminate(process)
        raise
    return process


def _terminate(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stop_server(process: subprocess.Popen[bytes], settings: Settings) -> int:
    """Stop a server :func:`start_server` started and remove its state file.

    Returns:
        The server's exit code.
    """
    code = _terminate(process)
    path = server_state_file(settings)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == process.pid:
            path.unlink()
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP stop :func:`serve_forever` the way Ctrl-C does.

    The server runs in its own session, so it would outlive a fetchflow killed by them.
    Signals someone chose to ignore (``nohup``) stay ignored; only the main thread can
    install handlers. Returns a function that puts the previous handlers back.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is signal.SIG_DFL:
                previous[number] = signal.signal(number, _interrupt)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    return restore


def serve_forever(
    settings: Settings,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    *,
    database: ServerDatabase | None = None,
    out: TextIO | None = None,
    files_port: int | None = None,
) -> int:
    """``fetchflow server``: start the server, say where it is, run until Ctrl-C.

    ``database``: see :func:`start_server`. With the local asset store, its files are
    served too (:mod:`~fetchflow.orchestration.file_server`) on ``files_port``; None is
    ``port + 1``, or a free port when that one is taken.

    Ctrl-C, SIGTERM and SIGHUP stop the server and remove the state file.

    Returns:
        0 after Ctrl-C, 130 when interrupted while starting, the server's exit code if it
        stopped by itself.

    Raises:
        SettingsInvalid, ServerError: See :func:`start_server`.
    """
    out = out or sys.stderr
    if database is not None:
        check_database(database)  # a bad database is the only message, not after "starting"
    print(f"starting Prefect server on {_base_url(host, port)} …", file=out, flush=True)
    restore = stop_on_signals()
    beside = port + 1 if port < 65535 else 0  # the last port has no next one: a free one
    # The local store's files are this machine's: served on the loopback address only, even
    # when the Prefect server listens on every address (--host 0.0.0.0).
    files = _serve_files(
        settings, DEFAULT_HOST, files_port or beside, chosen=files_port is not None
    )
    try:
        try:
            process = start_server(settings, port, host, database=database, files=files)
        except KeyboardInterrupt:
            return 130
        try:
            info = running_server(settings, timeout=5.0)
            if info is not None:
                history = info.database or str(settings.prefect_home.resolve())
                served = (
                    f"files        {files.url} (the local store {files.root})\n"
                    if files is not None
                    else ""
                )
                print(
                    f"Prefect UI   {info.ui_url}\n"
                    f"API          {info.api_url}\n"
                    f"history      {history}\n"
                    + served
                    + "fetchflow run sends its runs here while this runs; Ctrl-C stops it.",
                    file=out,
                    flush=True,
                )
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            stop_server(process, settings)
    finally:
        if files is not None:
            files.close()
        restore()


def _serve_files(settings: Settings, host: str, port: int, *, chosen: bool) -> FileServer | None:
    """The local store's file server on ``port``, or None when the store is not a local
    folder (S3 links open in a browser already). A taken default port gives a free one; a
    taken ``chosen`` one is an error.

    Raises:
        ServerError: The chosen port is taken.
    """
    from fetchflow.errors import StorageError
    from fetchflow.storage.factory import open_store
    from fetchflow.storage.local import LocalStore

    try:
        store = open_store(settings)
    except StorageError:
        return None  # a run says what is wrong with FETCHFLOW_STORE; the UI still works
    if not isinstance(store, LocalStore):
        return None
    try:
        return start_file_server(store.root, host, port)
    except OSError as error:
        if chosen:
            raise ServerError(
                f"cannot serve the local store's files on {host}:{port}: {error.strerror or error}",
                f"another program uses port {port}; choose another: fetchflow server "
                f"--files-port {port + 1}",
            ) from None
    return start_file_server(store.root, host, 0)
