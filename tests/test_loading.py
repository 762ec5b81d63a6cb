"""YAML loading: data, positions (1-based), duplicate keys, merge keys, syntax errors."""

from __future__ import annotations

import pytest

from fetchflow.errors import Problem
from fetchflow.loading import Span, load_yaml, path_text

SYNTAX_HINT = (
    "check the indentation and quoting on this line and the one before; "
    "template expressions are written << expr >>"
)


def test_data_and_positions_of_keys_and_values() -> None:
    text = "name: demo\nsteps:\n  - id: brief\n    retries: [1, 2]\n"

    loaded = load_yaml(text, "w.yaml")

    assert loaded.problems == []
    assert loaded.data == {"name": "demo", "steps": [{"id": "brief", "retries": [1, 2]}]}
    assert loaded.source.key(("steps",)) == Span(2, 1)
    assert loaded.source.value(("steps", 0)) == Span(3, 5)
    assert loaded.source.key(("steps", 0, "id")) == Span(3, 5)
    assert loaded.source.value(("steps", 0, "id")) == Span(3, 9)
    assert loaded.source.value(("steps", 0, "retries", 1)) == Span(4, 18)


def test_unknown_path_falls_back_to_the_nearest_known_position() -> None:
    loaded = load_yaml("name: demo\nsteps:\n  - id: brief\n", "w.yaml")

    assert loaded.source.key(("steps", 0, "nope", "deeper")) == Span(3, 5)
    assert loaded.source.key(("elsewhere",)) == Span(1, 1)


def test_text_position_inside_a_block_scalar() -> None:
    text = "prompt: |\n  first line\n  second << hero.output >>\n"

    loaded = load_yaml(text, "w.yaml")

    assert ("prompt",) in loaded.source.block_scalars
    assert loaded.source.text_position(("prompt",), 2, "hero") == Span(3, 13)


def test_text_position_inside_a_quoted_scalar() -> None:
    loaded = load_yaml('prompt: "a << hero.output >>"\n', "w.yaml")

    assert loaded.source.text_position(("prompt",), 1, "hero") == Span(1, 15)


def test_duplicate_key_is_reported_at_the_second_one_and_the_first_is_kept() -> None:
    text = "name: first\nsteps: []\nname: second\n"

    loaded = load_yaml(text, "w.yaml")

    assert loaded.data == {"name": "first", "steps": []}
    assert loaded.problems == [
        Problem(
            message='duplicate key "name" (first at line 1)',
            hint='keep one "name": YAML would silently use only the last one',
            file="w.yaml",
            line=3,
            column=1,
            field="name",
        )
    ]


def test_nested_duplicate_key_names_its_dotted_field() -> None:
    text = "steps:\n  - id: a\n    id: b\n"

    loaded = load_yaml(text, "w.yaml")

    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.id")
    assert problem.message == 'duplicate key "id" (first at line 2)'


def test_merge_keys_copy_the_anchored_mapping_and_own_keys_win() -> None:
    text = (
        "base: &defaults\n"
        "  retries: 2\n"
        "  on_failure: continue\n"
        "step:\n"
        "  <<: *defaults\n"
        "  retries: 3\n"
    )

    loaded = load_yaml(text, "w.yaml")

    assert loaded.problems == []
    assert loaded.data == {
        "base": {"retries": 2, "on_failure": "continue"},
        "step": {"retries": 3, "on_failure": "continue"},
    }
    # A merged value is located where it is written: in the anchored mapping.
    assert loaded.source.value(("step", "on_failure")) == Span(3, 15)


def test_merge_of_a_list_is_a_problem() -> None:
    loaded = load_yaml("m: &m [1]\nx:\n  <<: *m\n", "w.yaml")

    assert loaded.data == {"m": [1], "x": {}}
    assert [(p.line, p.column, p.message, p.hint) for p in loaded.problems] == [
        (
            1,
            8,
            "a merge key (<<:) needs a mapping or a list of mappings",
            "merge an anchored mapping: <<: *defaults",
        )
    ]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        pytest.param(
            "name: x\nsteps:\n  - id: a\n    type: t\n     template: far\n",
            5,
            14,
            "YAML syntax error: mapping values are not allowed in this context",
            id="over-indented-key",
        ),
        pytest.param(
            "name: [a, b\nsteps: 1\n",
            2,
            6,
            "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)",
            id="unclosed-flow-list",
        ),
        pytest.param(
            "a: 1\n\tb: 2\n",
            2,
            1,
            "YAML syntax error: found a tab character that violates indentation "
            "(while scanning a plain scalar)",
            id="tab-indentation",
        ),
        pytest.param(
            "a: *nope\n",
            1,
            4,
            "YAML syntax error: found undefined alias",
            id="undefined-alias",
        ),
        pytest.param(
            "---\na: 1\n---\nb: 2\n",
            3,
            1,
            "YAML syntax error: but found another document "
            "(expected a single document in the stream)",
            id="two-documents",
        ),
    ],
)
def test_syntax_error_is_one_located_problem_and_no_data(
    text: str, line: int, column: int, message: str
) -> None:
    loaded = load_yaml(text, "w.yaml")

    assert loaded.data is None
    assert loaded.problems == [
        Problem(message=message, hint=SYNTAX_HINT, file="w.yaml", line=line, column=column)
    ]


@pytest.mark.parametrize(
    "text",
    [pytest.param("", id="empty"), pytest.param("# only a comment\n", id="comment-only")],
)
def test_empty_document_is_none_without_problems(text: str) -> None:
    loaded = load_yaml(text, "w.yaml")

    assert (loaded.data, loaded.problems) == (None, [])


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        pytest.param("1: x\n", 1, "keys must be plain names, got '1'", id="number-key"),
        pytest.param("? [a, b]\n: 1\n", 3, "keys must be plain names, got a list", id="list-key"),
    ],
)
def test_non_string_key_is_a_problem(text: str, column: int, message: str) -> None:
    loaded = load_yaml(text, "w.yaml")

    assert loaded.data == {}
    assert [(p.line, p.column, p.message, p.hint) for p in loaded.problems] == [
        (1, column, message, "write the key as a name, e.g. prompt:")
    ]


def test_unknown_yaml_tag_is_refused_not_constructed() -> None:
    loaded = load_yaml("a: !!python/name:os.system x\n", "w.yaml")

    assert loaded.data == {"a": None}
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (1, 4, "a")
    assert problem.message.startswith("cannot read this value: could not determine a constructor")
    assert problem.hint == "remove the YAML tag or quote the value"


@pytest.mark.parametrize(
    ("path", "text"),
    [
        pytest.param((), "", id="root"),
        pytest.param(("steps", 0, "prompt"), "steps.0.prompt", id="nested"),
    ],
)
def test_path_text(path: tuple[str | int, ...], text: str) -> None:
    assert path_text(path) == text
