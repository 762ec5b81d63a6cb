"""``fetchflow serve PATH...``: workflows as Prefect deployments with typed run forms."""

from __future__ import annotations

import argparse
import os

from fetchflow.cli.common import EXIT_OK, bad_flag, step_types, with_home

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Check every workflow, then serve them all until stopped."""
    from fetchflow.orchestration.deploy import check_workflows, serve_target
    from fetchflow.orchestration.prefect_env import prepare_prefect_environment
    from fetchflow.settings import load_settings

    if args.limit is not None and args.limit < 1:
        raise bad_flag(
            "--limit",
            f"expected at least 1 flow run at a time, got {args.limit}",
            "leave --limit out for Prefect's default (5), or give --limit 1 or more",
        )
    settings = with_home(load_settings())
    registry = step_types()
    check_workflows(args.paths, registry)  # every problem of every file, before Prefect
    target = serve_target(settings)
    if os.environ.get("PREFECT_API_URL"):
        from fetchflow.orchestration.server import check_prefect_api

        check_prefect_api(target.api_url)
    os.environ["PREFECT_API_URL"] = target.api_url
    prepare_prefect_environment(settings, verbose=True)
    from fetchflow.orchestration.deploy import serve_workflows

    serve_workflows(
        args.paths, settings=settings, registry=registry, limit=args.limit, ui_url=target.ui_url
    )
    return EXIT_OK
