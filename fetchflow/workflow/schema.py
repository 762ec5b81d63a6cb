"""The JSON Schema of workflow files, for editors' YAML language servers.

Point the YAML extension at it (``# yaml-language-server: $schema=workflow.schema.json`` at
the top of a workflow, after ``fetchflow schema > workflow.schema.json``) for completion
and inline errors. Every field that can hold a template also accepts a template string.

Its ``$id`` is a URN naming the fetchflow version that wrote it
(``urn:fetchflow:workflow-schema:<version>``), not a URL: the schema is made on the user's
machine from the step types installed there (plugins included), so no one hosted copy is
it, and a URL that editors might fetch would promise one. The version tells two written
copies apart. A string field with ``examples`` (the image steps' ``model``: every catalog
model) lists them as suggestions an editor completes, while any other text, a custom model
or a template, stays valid.
"""

from __future__ import annotations

from typing import Any

from fetchflow.registry import StepRegistry
from fetchflow.workflow.spec import StepCommon, WorkflowHeader

__all__ = ["SCHEMA_ID_PREFIX", "schema_id", "workflow_schema"]

#: The schema's ``$id`` is this and the fetchflow version.
SCHEMA_ID_PREFIX = "urn:fetchflow:workflow-schema:"

_TEMPLATE = {
    "type": "string",
    "pattern": r"(<<|<%|\{\{|\{%)",
    "description": "A template: << expr >> (or {{ expr }}), rendered when the step runs.",
}


#: Keywords that leave any text valid: a field whose schema holds only these takes a template
#: as it is. Any other keyword (``enum``, ``pattern``, a number type...) would refuse one.
_FREE_TEXT_KEYWORDS = frozenset({"type", "title", "description", "default", "minLength"})


def schema_id() -> str:
    """``urn:fetchflow:workflow-schema:<version>`` (``0`` when fetchflow is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return SCHEMA_ID_PREFIX + version("fetchflow")
    except PackageNotFoundError:
        return SCHEMA_ID_PREFIX + "0"


def _suggesting(schema: dict[str, Any]) -> dict[str, Any]:
    """A free string whose ``examples`` an editor offers: the examples as an ``enum``
    branch, any string (a template too) as the other."""
    examples = [example for example in schema["examples"] if isinstance(example, str)]
    kept = {k: v for k, v in schema.items() if k not in ("type", "examples")}
    return {
        "anyOf": [{"type": "string", "enum": examples}, {"type": "string"}],
        **kept,
        "examples": examples,
    }


def _templatable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or that or a template string: every config field may hold a template."""
    if schema.get("type") == "string" and set(schema) <= {*_FREE_TEXT_KEYWORDS, "examples"}:
        return _suggesting(schema) if schema.get("examples") else schema
    return {"anyOf": [schema, _TEMPLATE], **{k: schema[k] for k in ("description",) if k in schema}}


def _step_schema(name: str, config: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    properties = dict(common["properties"])
    properties["type"] = {"const": name, "description": properties["type"].get("description", "")}
    # One id may be written without a list (needs: brief), as the checker accepts.
    properties["needs"] = {
        "anyOf": [{"type": "string"}, properties["needs"]],
        "description": properties["needs"].get("description", ""),
    }
    for field, schema in config.get("properties", {}).items():
        properties[field] = _templatable(schema)
    return {
        "title": name,
        "type": "object",
        "properties": properties,
        "required": sorted({"id", "type", *config.get("required", [])}),
        "additionalProperties": False,
    }


def workflow_schema(registry: StepRegistry) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file with the registered step types."""
    header = WorkflowHeader.model_json_schema()
    common = StepCommon.model_json_schema()
    defs: dict[str, Any] = dict(header.pop("$defs", {}))
    step_refs = []
    for name, step_cls in registry.items():
        config = step_cls.config_model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(config.pop("$defs", {}))
        key = f"step_{name}"
        defs[key] = _step_schema(name, config, common)
        step_refs.append({"$ref": f"#/$defs/{key}"})
    properties = dict(header["properties"])
    properties["steps"] = {
        "type": "array",
        "minItems": 1,
        "description": "The steps, each with an id, a type and that type's fields.",
        "items": {"oneOf": step_refs} if step_refs else {"type": "object"},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id(),
        "title": "fetchflow workflow",
        "type": "object",
        "properties": properties,
        "required": ["name", "steps"],
        "additionalProperties": False,
        "$defs": defs,
    }
