"""``fetchflow steps``: the installed step types and their fields."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fetchflow.cli.common import EXIT_OK, step_types

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Print each step type with its fields (``--json``: as JSON)."""
    as_json = args.json
    registry = step_types()
    described: dict[str, Any] = {}
    for name, step_cls in registry.items():
        schema = step_cls.config_model.model_json_schema()
        required = set(schema.get("required", []))
        described[name] = {
            "summary": step_cls.summary(),
            "billable": step_cls.billable,
            "fields": {
                field: {
                    "required": field in required,
                    "description": spec.get("description", ""),
                    **({"default": spec["default"]} if "default" in spec else {}),
                }
                for field, spec in schema.get("properties", {}).items()
            },
        }
    if as_json:
        print(json.dumps(described, indent=2))
        return EXIT_OK
    for name, info in described.items():
        print(f"{name}: {info['summary']}")
        for field, spec in info["fields"].items():
            flag = "required" if spec["required"] else f"default {json.dumps(spec.get('default'))}"
            print(f"  {field:<22} {spec['description']} ({flag})")
        print()
    from fetchflow.workflow.spec import STEP_COMMON_KEYS

    print(f"Every step also takes: {', '.join(STEP_COMMON_KEYS)}.")
    return EXIT_OK
