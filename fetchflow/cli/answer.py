"""``fetchflow approve`` / ``fetchflow deny RUN_ID``: answer a run waiting for approval."""

from __future__ import annotations

import argparse
import os
import sys

from fetchflow.cli.common import EXIT_INVALID, EXIT_OK, with_home
from fetchflow.errors import with_hint

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Approve or deny the steps a paused run waits on."""
    from fetchflow.orchestration.prefect_env import prepare_prefect_environment
    from fetchflow.orchestration.server import check_prefect_api, running_server
    from fetchflow.settings import load_settings

    settings = with_home(load_settings())
    if os.environ.get("PREFECT_API_URL"):
        check_prefect_api(os.environ["PREFECT_API_URL"])
    else:
        server = running_server(settings)
        if server is None:
            message = with_hint(
                "fetchflow: no Prefect server to reach: the run waits on the server it runs on",
                "start `fetchflow server` before `fetchflow run`, or set PREFECT_API_URL to "
                "the server of the run",
            )
            print(message, file=sys.stderr)
            return EXIT_INVALID
        os.environ["PREFECT_API_URL"] = server.api_url
    prepare_prefect_environment(settings)
    from fetchflow.orchestration.approval import answer_paused_run

    print(
        answer_paused_run(
            args.run_id,
            approve=args.command == "approve",
            edits=getattr(args, "set", []),
            note=args.note,
        )
    )
    return EXIT_OK
