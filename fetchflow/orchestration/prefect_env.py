"""Prefect's environment for fetchflow runs, set before Prefect is imported.

Without ``PREFECT_API_URL`` a run uses Prefect's embedded server with fetchflow's own
Prefect home (``<FETCHFLOW_HOME>/prefect``), a quiet console (fetchflow prints its own
progress; the full logs stay in Prefect) and a start-up timeout that suits slow machines.
Anything the user set explicitly wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from fetchflow.settings import Settings

__all__ = ["prefect_defaults", "prepare_prefect_environment"]


def prefect_defaults(settings: Settings, *, verbose: bool = False) -> dict[str, str]:
    """The Prefect variables fetchflow sets when the user has not."""
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL" if not verbose else "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL" if not verbose else "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL" if not verbose else "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL" if not verbose else "INFO",
        "PREFECT_CLI_PROMPT": "false",
    }
    if "PREFECT_API_URL" not in os.environ:
        defaults["PREFECT_HOME"] = str(settings.prefect_home.resolve())
    return defaults


def prepare_prefect_environment(
    settings: Settings, *, verbose: bool = False, environ: MutableMapping[str, str] | None = None
) -> None:
    """Apply :func:`prefect_defaults` to the environment without overriding the user."""
    target = os.environ if environ is None else environ
    for key, value in prefect_defaults(settings, verbose=verbose).items():
        target.setdefault(key, value)
    if "PREFECT_HOME" in target:
        # Prefect does not create parent folders of its home, and then fails much later.
        Path(target["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
