"""``fetchflow server``: a local Prefect server and its UI, which runs then use, and the
local asset store's files over HTTP (so the UI's links open them)."""

from __future__ import annotations

import argparse
import os

from fetchflow.cli.common import bad_flag, with_home

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Serve the UI and API until Ctrl-C."""
    from fetchflow.orchestration.database import server_database
    from fetchflow.orchestration.server import serve_forever
    from fetchflow.settings import load_settings

    if not 1 <= args.port <= 65535:
        raise bad_flag(
            "--port",
            f"expected a port number from 1 to 65535, got {args.port}",
            "leave --port out for 4200, or give a free port such as 4201",
        )
    if args.files_port is not None and not 1 <= args.files_port <= 65535:
        raise bad_flag(
            "--files-port",
            f"expected a port number from 1 to 65535, got {args.files_port}",
            "leave --files-port out for --port + 1, or give a free port such as 4202",
        )
    if args.files_port == args.port:
        raise bad_flag(
            "--files-port",
            f"{args.files_port} is the --port of the Prefect server; the files need a port "
            "of their own",
            "leave --files-port out for --port + 1, or give another free port",
        )
    settings = with_home(load_settings())
    database = server_database(settings, args.database, os.environ)
    return serve_forever(
        settings, port=args.port, host=args.host, database=database, files_port=args.files_port
    )
