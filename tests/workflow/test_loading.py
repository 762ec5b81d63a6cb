"""YAML loading: data, positions (1-based), duplicate keys, merge keys, syntax errors."""

from __future__ import annotations

import time

import pytest

from fetchflow.errors import Problem
from fetchflow.workflow.loading import Span, load_yaml, path_text

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


# -- resource bounds and the likely causes of syntax errors ----------------------------------


def laughs(levels: int) -> str:
    """A flow list of ``10 ** levels`` items in under 1 KB: each anchor repeated 10 times."""
    text = "&a0 [" + ", ".join(["lol"] * 10) + "]"
    for level in range(1, levels):
        text = f"&a{level} [{text}, " + ", ".join([f"*a{level - 1}"] * 9) + "]"
    return text


BOMB_MESSAGE = (
    "aliases expand this value past the limit of 1000000 added values or 10000000 added "
    'characters (an alias bomb, "billion laughs")'
)
BOMB_HINT = "write the value out, or repeat a smaller anchor fewer times"


@pytest.mark.parametrize(
    ("text", "line", "column", "field"),
    [
        pytest.param(
            f"name: x\ninputs:\n  p:\n    default: {laughs(9)}\n",
            4,
            5,
            "inputs.p.default",
            id="input-default",
        ),
        pytest.param(
            f"steps:\n  - id: s\n    prompt: x\n  - id: t\n    images: {laughs(9)}\n",
            5,
            5,
            "steps.1.images",
            id="step-field",
        ),
        pytest.param(
            "".join(
                f"m{n}: &m{n} {{" + ", ".join(f"k{k}: *m{n - 1}" for k in range(10)) + "}\n"
                for n in range(1, 9)
            ).replace("*m0", "x"),
            6,
            1,
            "m6",
            id="mappings-at-top-level",
        ),
        pytest.param(
            "text: &t " + "x" * 1000 + "\nt1: &t1 [" + ", ".join(["*t"] * 100) + "]\n"
            "t2: &t2 [" + ", ".join(["*t1"] * 100) + "]\nbig: [" + ", ".join(["*t2"] * 2) + "]\n",
            4,
            1,
            "big",
            id="long-text-repeated",
        ),
    ],
)
def test_an_alias_bomb_is_refused_at_the_field_that_holds_it(
    text: str, line: int, column: int, field: str
) -> None:
    started = time.monotonic()

    loaded = load_yaml(text, "w.yaml")

    assert time.monotonic() - started < 2
    assert loaded.data is None
    assert loaded.problems == [
        Problem(
            message=BOMB_MESSAGE,
            hint=BOMB_HINT,
            file="w.yaml",
            line=line,
            column=column,
            field=field,
        )
    ]


def test_aliases_within_the_limit_are_expanded() -> None:
    loaded = load_yaml(f"a: {laughs(4)}\nb: [*a3, *a3, *a3, *a3]\n", "w.yaml")

    assert loaded.problems == []
    assert isinstance(loaded.data, dict)
    assert len(loaded.data["b"]) == 4


def test_a_large_file_without_aliases_or_with_many_merges_is_not_a_bomb() -> None:
    steps = "".join(f"  - <<: *d\n    id: s{n}\n" for n in range(1, 12_000))
    text = f"steps:\n  - &d\n    id: s0\n    type: t\n    prompt: hi\n    retries: 1\n{steps}"
    literal = "big: [" + ", ".join(["x"] * 120_000) + "]\n"

    merged, written = load_yaml(text, "w.yaml"), load_yaml(literal, "w.yaml")

    assert (merged.problems, written.problems) == ([], [])
    assert isinstance(merged.data, dict)
    assert merged.data["steps"][-1] == {"id": "s11999", "type": "t", "prompt": "hi", "retries": 1}


UNQUOTED_HINT = (
    'a value that starts with { is read as a YAML mapping: quote it ("{{ a.output }}") or '
    "write << a.output >>"
)


@pytest.mark.parametrize(
    ("text", "column", "field"),
    [
        pytest.param("prompt: {{ a.output }}\n", 9, "prompt", id="value"),
        pytest.param("images:\n  - {{ a.output }}\n", 5, "images.0", id="list-item"),
    ],
)
def test_an_unquoted_template_is_told_to_be_quoted(text: str, column: int, field: str) -> None:
    loaded = load_yaml(text, "w.yaml")

    assert [(p.line, p.column, p.field, p.message, p.hint) for p in loaded.problems] == [
        (
            text.count("\n"),
            column,
            field,
            "{{ a.output }} is read as a YAML mapping, not as a template",
            UNQUOTED_HINT,
        )
    ]


@pytest.mark.parametrize(
    ("text", "column", "message", "hint"),
    [
        pytest.param(
            "prompt: {{ a.output }} on a table\n",
            9,
            "did not find expected key (while parsing a block mapping)",
            UNQUOTED_HINT,
            id="expression-then-text",
        ),
        pytest.param(
            "prompt: {% if x %}a{% endif %}\n",
            9,
            "found character that cannot start any token (while scanning for the next token)",
            'a value that starts with { is read as a YAML mapping: quote it ("{% if x %}") or '
            "write <% if x %>",
            id="statement",
        ),
    ],
)
def test_a_syntax_error_from_an_unquoted_template_says_to_quote_it(
    text: str, column: int, message: str, hint: str
) -> None:
    loaded = load_yaml(text, "w.yaml")

    assert loaded.problems == [
        Problem(
            message=f"YAML syntax error: {message}",
            hint=hint,
            file="w.yaml",
            line=1,
            column=column,
        )
    ]


@pytest.mark.parametrize(
    ("quote", "end"), [pytest.param('"', 4, id="double"), pytest.param("'", 4, id="single")]
)
def test_an_unclosed_quote_is_located_where_it_opens(quote: str, end: int) -> None:
    text = f"steps:\n  - prompt: {quote}a vase\n    model: x\n  - prompt: {quote}b{quote}\n"

    loaded = load_yaml(text, "w.yaml")

    assert loaded.problems == [
        Problem(
            message="YAML syntax error: this quote is not closed on its line: the value runs "
            f"on to line {end}",
            hint=f"close the quote ({quote}) on line 2, or write a long text as a block (key: |)",
            file="w.yaml",
            line=2,
            column=13,
        )
    ]
