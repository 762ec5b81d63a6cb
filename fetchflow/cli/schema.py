"""``fetchflow schema``: the JSON Schema of workflow files, for editors."""

from __future__ import annotations

import argparse
import json

from fetchflow.cli.common import EXIT_OK, step_types

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Print the schema."""
    from fetchflow.workflow.schema import workflow_schema

    print(json.dumps(workflow_schema(step_types()), indent=2))
    return EXIT_OK
