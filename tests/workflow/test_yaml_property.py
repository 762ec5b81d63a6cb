"""Property: whatever text a workflow file holds, the check answers with our own errors only.

``check_text`` either returns a :class:`~fetchflow.workflow.plan.Plan` or raises
:class:`~fetchflow.errors.WorkflowInvalid`, never any other exception, and every problem it
reports has a place (line and column ≥ 0), a non-empty message and formats to lines that
start with the file's name and hold no traceback. Three sources of input:

- arbitrary text;
- arbitrary YAML-shaped data (scalars, lists, mappings; keys drawn partly from the
  workflow vocabulary so the checker gets past the top level) dumped with ``yaml.safe_dump``;
- a valid workflow (a template step and an image_generation step) mutated: keys dropped,
  key lines duplicated, values retyped, template strings of ``<<``, ``<%``, ``{{`` and
  friends put in place of strings.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchflow.errors import WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text
from fetchflow.workflow.plan import Plan

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
FILE = "prop.yaml"
REGISTRY = StepRegistry.from_entry_points()

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: A valid workflow every mutation starts from.
VALID: dict[str, object] = {
    "name": "property base",
    "description": "A brief, then an image of it.",
    "inputs": {
        "product": {"type": "string", "default": "blue vase"},
        "count": {"type": "integer", "default": 2},
        "hd": {"type": "boolean", "default": False},
    },
    "steps": [
        {
            "id": "brief",
            "type": "template",
            "template": "A << inputs.product >><% if inputs.hd %>, in detail<% endif %>.",
        },
        {
            "id": "hero",
            "type": "image_generation",
            "model": "preview",
            "prompt": "<< brief.output >>",
            "count": "<< inputs.count >>",
            "size": "1024x1024",
            "output_format": "webp",
            "output_compression": 80,
            "seed": 7,
            "on_failure": "continue",
            "retries": 1,
        },
        {
            "id": "caption",
            "type": "template",
            "needs": ["hero"],
            "template": "See << hero.output.0.file_url >>",
        },
    ],
}

VOCABULARY = [
    "name",
    "description",
    "inputs",
    "steps",
    "id",
    "type",
    "template",
    "file",
    "needs",
    "on_failure",
    "retries",
    "timeout_seconds",
    "prompt",
    "model",
    "size",
    "count",
    "default",
    "image_generation",
    "<<",
]

TEMPLATE_BITS = [
    "<<",
    ">>",
    "<%",
    "%>",
    "{{",
    "}}",
    "{%",
    "%}",
    "<#",
    "#>",
    " ",
    ".",
    "|",
    "'",
    '"',
    "(",
    ")",
    "0",
    "inputs",
    "inputs.product",
    "inputs.nope",
    "brief.output",
    "hero.output.0.file_url",
    "hero.output.file_url",
    "caption",
    "run.id",
    "if",
    "endif",
    "for x in",
    "endfor",
    "include 'brand.j2'",
    "include 'missing.j2'",
    "attr('__class__')",
    "__class__",
    "join(', ')",
    "upper",
]


def assert_only_our_errors(text: str) -> None:
    """The property itself."""
    check_only_our_errors(text)


def check_only_our_errors(text: str) -> None:
    """Only a Plan or WorkflowInvalid with well-formed problems."""
    try:
        plan = check_text(text, FILE, REGISTRY, Templates([TEMPLATES]))
    except WorkflowInvalid as error:
        assert error.problems, "WorkflowInvalid without a problem"
        for problem in error.problems:
            assert problem.line >= 0
            assert problem.column >= 0
            assert problem.message.strip(), problem
            formatted = problem.format()
            assert "Traceback" not in formatted
            assert 'File "' not in formatted
            assert formatted.splitlines()[0].startswith((FILE, "<workflow>")), formatted
    else:
        assert isinstance(plan, Plan)


# -- strategies ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(VOCABULARY),
)
keys = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=12))
yaml_data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
template_strings = st.one_of(
    st.lists(st.sampled_from(TEMPLATE_BITS), max_size=10).map("".join),
    st.lists(st.one_of(st.sampled_from(TEMPLATE_BITS), st.text(max_size=5)), max_size=8).map(
        "".join
    ),
)

Path_ = tuple[object, ...]


def _paths(value: object, prefix: Path_ = ()) -> list[Path_]:
    """Every key or index path under ``value`` (mappings and lists)."""
    found: list[Path_] = []
    items: list[tuple[object, object]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _parent(data: object, path: Path_) -> dict[object, object] | list[object]:
    for key in path[:-1]:
        data = data[key]  # type: ignore[index]
    assert isinstance(data, dict | list)
    return data


@st.composite
def mutated_workflows(draw: st.DrawFn) -> str:
    data: object = yaml.safe_load(yaml.safe_dump(VALID, sort_keys=False))  # a deep copy
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        operation = draw(st.sampled_from(["drop", "retype", "template"]))
        if operation == "drop":
            del parent[path[-1]]  # type: ignore[arg-type]
        elif operation == "retype":
            parent[path[-1]] = draw(yaml_data)  # type: ignore[index]
        else:
            parent[path[-1]] = draw(template_strings)  # type: ignore[index]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):
        text = _duplicate_a_key_line(text, draw(st.integers(min_value=0, max_value=10_000)))
    return text


_KEY_LINE = re.compile(r"^(\s*)(- )?([\w.-]+:.*)$")


def _duplicate_a_key_line(text: str, choice: int) -> str:
    """Repeat one ``key: value`` line right below itself (a duplicate key)."""
    lines = text.splitlines()
    candidates = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    if not candidates:
        return text
    index = candidates[choice % len(candidates)]
    match = _KEY_LINE.match(lines[index])
    assert match is not None
    indent, dash, rest = match.groups()
    lines.insert(index + 1, indent + ("  " if dash else "") + rest)
    return "\n".join(lines) + "\n"


# -- the properties --------------------------------------------------------------------------


def test_the_base_workflow_is_valid() -> None:
    plan = check_text(
        yaml.safe_dump(VALID, sort_keys=False), FILE, REGISTRY, Templates([TEMPLATES])
    )

    assert list(plan.steps) == ["brief", "hero", "caption"]


@BOUNDED
@given(st.text(max_size=400))
def test_arbitrary_text_gives_only_our_errors(text: str) -> None:
    assert_only_our_errors(text)


@BOUNDED
@given(yaml_data)
def test_arbitrary_yaml_data_gives_only_our_errors(data: object) -> None:
    assert_only_our_errors(yaml.safe_dump(data, allow_unicode=True))


@BOUNDED
@given(st.dictionaries(st.sampled_from(["name", "steps", "inputs", "description"]), yaml_data))
def test_arbitrary_workflow_shapes_give_only_our_errors(data: dict[str, object]) -> None:
    assert_only_our_errors(yaml.safe_dump(data, allow_unicode=True))


@BOUNDED
@given(mutated_workflows())
def test_mutated_workflows_give_only_our_errors(text: str) -> None:
    assert_only_our_errors(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name: x\nsteps: [{id: a, type: template, template: '<<'}]\n", id="open"),
        pytest.param("name: x\nsteps:\n  - &a [*a]\n", id="recursive-alias"),
        pytest.param(
            "name: x\nsteps:\n  - {id: a, type: '', template: hi}\n", id="empty-step-type"
        ),
        pytest.param("{" * 200 + "}" * 200, id="deep-nesting"),
        pytest.param("name: x\nsteps:\n  - <<: 5\n", id="merge-key-of-a-scalar"),
        pytest.param("\x00\x01", id="control-characters"),
        pytest.param("\ufeffname: x\n", id="byte-order-mark"),
        pytest.param(
            "name: x\nsteps:\n  - {id: a, type: template, template: &a0 [x, x, x, x, x, x, x, x]}\n"
            + "".join(
                f"x{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 8) + "]\n" for n in range(1, 11)
            ),
            id="alias-bomb",
        ),
        pytest.param(
            "name: x\nsteps:\n  - {id: a, type: template, template: {{ b }}}\n", id="braces"
        ),
        pytest.param(
            'name: x\nsteps:\n  - id: a\n    template: "open\n  - id: b "\n', id="open-quote"
        ),
        pytest.param(
            "name: x\nsteps: [{id: a, type: template, template: \"<< 'a' * 10**10 >>\"}]\n",
            id="string-bomb",
        ),
        pytest.param(
            'name: x\nsteps: [{id: a, type: template, template: "<< '
            + "(" * 2000
            + "1"
            + ")" * 2000
            + ' >>"}]\n',
            id="deep-expression",
        ),
        pytest.param(
            'name: x\nsteps: [{id: a, type: template, template: "<% for i in range(99999) %>'
            '<% for j in range(99999) %><% endfor %><% endfor %>"}]\n',
            id="nested-loops",
        ),
    ],
)
def test_known_awkward_texts_give_only_our_errors(text: str) -> None:
    started = time.monotonic()

    check_only_our_errors(text)

    assert time.monotonic() - started < 10
