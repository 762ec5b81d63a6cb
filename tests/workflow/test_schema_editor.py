"""What editors get from ``fetchflow schema``: an ``$id``, every example workflow valid, and
the image models as suggestions that still let any model (or a template) through.

Run through the real command (``python -m fetchflow.cli schema``) and checked with
``jsonschema``, which resolves the schema's ``$ref``s against its ``$id``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from steps.imaging.models.catalog import CATALOG

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "flows").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "schema"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def image_step(model: object) -> dict[str, Any]:
    step = {"id": "hero", "type": "image_generation", "prompt": "a vase", "model": model}
    return {"name": "w", "steps": [step]}


def test_the_schema_is_identified_by_a_versioned_urn(schema: dict[str, Any]) -> None:
    assert schema["$id"] == f"urn:fetchflow:workflow-schema:{version('fetchflow')}"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_example_workflow_matches_the_schema(
    validator: Draft202012Validator, path: Path
) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert [error.message for error in validator.iter_errors(document)] == []


@pytest.mark.parametrize("step_type", ["image_generation", "image_edit"])
def test_model_suggests_auto_and_every_catalog_model(
    schema: dict[str, Any], step_type: str
) -> None:
    model = schema["$defs"][f"step_{step_type}"]["properties"]["model"]
    names = ["auto", *CATALOG]

    assert model["anyOf"] == [{"type": "string", "enum": names}, {"type": "string"}]
    assert model["examples"] == names
    assert model["default"] == "auto"
    assert "preview" in names and "gpt-image-2" in names


@pytest.mark.parametrize(
    ("model", "valid"),
    [
        pytest.param("gpt-image-2", True, id="catalog-model"),
        pytest.param("my-fine-tuned-model", True, id="custom-model"),
        pytest.param("<< inputs.model >>", True, id="template"),
        pytest.param(3, False, id="number"),
    ],
)
def test_model_takes_any_text_besides_the_suggestions(
    validator: Draft202012Validator, model: object, valid: bool
) -> None:
    assert validator.is_valid(image_step(model)) is valid
