"""``fetchflow validate FILE...``: check workflow files; never imports Prefect."""

from __future__ import annotations

import argparse
import sys

from fetchflow.cli.common import EXIT_INVALID, EXIT_OK, step_types
from fetchflow.errors import WorkflowInvalid

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Check every file; print its problems or ``ok``."""
    files = args.files
    from fetchflow.workflow.checking import check_file

    registry = step_types()
    status = EXIT_OK
    for file in files:
        try:
            plan = check_file(file, registry)
        except WorkflowInvalid as error:
            print(error.format(), file=sys.stderr)
            count = len(error.problems)
            print(f"{file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            status = EXIT_INVALID
        else:
            count = len(plan.steps)
            print(f"{file}: ok ({count} step{'s' if count != 1 else ''})")
    return status
