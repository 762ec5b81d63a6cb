"""Prefect's temporary server for a run without ``PREFECT_API_URL``, out of Ctrl-C's way.

A terminal's Ctrl-C goes to the whole foreground process group. Prefect starts its temporary
server (``SubprocessASGIServer``) in the run's group, so the same Ctrl-C that asks the run to
stop gracefully also killed the server the run was still talking to: the run then hung for
minutes instead of ending ``interrupted``. Here the temporary server starts in its own
session (Ctrl-C never reaches it; the run stops it when it exits, as Prefect does), and on
Linux it is told to end when the run's process dies, so a SIGKILLed run leaves no server
behind.

Prefect's code keeps using it: the server is a port-keyed singleton, and the instance made
here is the one registered under the key Prefect's clients ask for (what Prefect's own test
harness does).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings

__all__ = ["start_temporary_server"]

_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: SIGTERM this process when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _OwnSessionServer(SubprocessASGIServer):
    """Prefect's temporary server, started in a session of its own."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        # Prefect 3.9.1's own command and environment (SubprocessASGIServer), plus the
        # session and the parent-death signal.
        server_env = {
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        return subprocess.Popen(
            args=[
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(prefect.__module_path__.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={
                **os.environ,
                **server_env,
                **get_current_settings().to_environment_variables(exclude_unset=True),
            },
            start_new_session=True,
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
        )


def start_temporary_server() -> str:
    """Start the run's temporary Prefect server in its own session, from this (the main)
    thread; Prefect's clients in this process use it. Returns its API URL.

    Call it only when no ``PREFECT_API_URL`` is set, before anything talks to Prefect.
    """
    server = SubprocessASGIServer._instances.get(None)
    if server is None:
        server = _OwnSessionServer()  # registers itself under Prefect's key (port None)
    server.start()
    return server.api_url
