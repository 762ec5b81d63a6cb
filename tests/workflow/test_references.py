"""Reference finding (full Jinja parse and the fast path) and path checks against schemas."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetchflow.step import OutputLength
from fetchflow.templating import JINJA_GLOBALS, Templates
from fetchflow.workflow.references import (
    check_index,
    check_path,
    closest,
    find_references,
    missing_item,
    simple_references,
    unsafe_attributes,
)

TEMPLATES = Templates([])

ASSETS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"file_url": {"type": "string"}, "file_name": {"type": "string"}},
    },
}

Found = list[tuple[str, tuple[str | int, ...], int]]


def full(source: str) -> Found:
    ast = TEMPLATES.parse(source)
    return [(ref.root, ref.path, ref.lineno) for ref in find_references(ast, JINJA_GLOBALS)]


def fast(source: str) -> Found | None:
    found = simple_references(source, JINJA_GLOBALS)
    return None if found is None else [(ref.root, ref.path, ref.lineno) for ref in found]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "<< hero.output.0.file_url >>",
            [("hero", ("output", 0, "file_url"), 1)],
            id="attribute-and-index",
        ),
        pytest.param("<< hero['output'][0] >>", [("hero", ("output", 0), 1)], id="subscripts"),
        pytest.param("<< inputs.product | upper >>", [("inputs", ("product",), 1)], id="filter"),
        pytest.param("one\n<< a.b >> << c >>", [("a", ("b",), 2), ("c", (), 2)], id="lines"),
        pytest.param("<% set x = 1 %><< x >>", [], id="set-is-local"),
        pytest.param(
            "<% for i in range(3) %><< i >><< loop.index >><% endfor %>",
            [],
            id="loop-variables-and-globals",
        ),
        pytest.param(
            "<% for a in hero.output %><< a.file_url >><% endfor %>",
            [("hero", ("output",), 1)],
            id="loop-over-a-reference",
        ),
        pytest.param("<% if inputs.flag %>y<% endif %>", [("inputs", ("flag",), 1)], id="if"),
        pytest.param(
            "<< hero.output[inputs.n] >>",
            [("hero", ("output",), 1), ("inputs", ("n",), 1)],
            id="dynamic-index",
        ),
        pytest.param("{{ a.b }}", [("a", ("b",), 1)], id="curly"),
        pytest.param("<< 'text' >>", [], id="constant"),
    ],
)
def test_find_references(source: str, expected: Found) -> None:
    assert full(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("plain text", id="no-template"),
        pytest.param("<< hero.output >>", id="one-lookup"),
        pytest.param("<<hero.output.0.file_url>>", id="no-spaces"),
        pytest.param("A << inputs.product >>,\nthen << brief.output >>.", id="text-and-lines"),
        pytest.param("<< range >> << inputs.n >>", id="global-skipped"),
        pytest.param("<< a.if >>", id="keyword-as-attribute"),
        pytest.param("x > y < z << a.B_1.0 >>", id="angle-brackets-in-text"),
        pytest.param("<< inputs >>", id="bare-root"),
    ],
)
def test_simple_references_agree_with_the_full_parse(source: str) -> None:
    assert fast(source) == full(source)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("<< a.b | upper >>", id="filter"),
        pytest.param("<% if a %>x<% endif %>", id="statement"),
        pytest.param("<# note #><< a >>", id="comment"),
        pytest.param("{{ a }}", id="curly-value"),
        pytest.param("{% if a %}{% endif %}", id="curly-statement"),
        pytest.param("{# c #}", id="curly-comment"),
        pytest.param("<< a + 1 >>", id="arithmetic"),
        pytest.param("<< a['b'] >>", id="subscript"),
        pytest.param("<< a.b() >>", id="call"),
        pytest.param("<< true >>", id="keyword-root"),
        pytest.param("<< loop.index >>", id="loop-root"),
        pytest.param("<< a._private >>", id="private-segment"),
        pytest.param("<< a. b >>", id="space-after-dot"),
        pytest.param("<< a >> %>", id="stray-statement-end"),
    ],
)
def test_simple_references_leave_anything_else_to_the_full_parse(source: str) -> None:
    assert fast(source) is None


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("<< a.2nd >>", id="ordinal"),
        pytest.param("<< a.1e5 >>", id="exponent"),
        pytest.param("<< a.007 >>", id="leading-zeros"),
    ],
)
def test_simple_references_refuse_segments_jinja_cannot_parse(source: str) -> None:
    assert fast(source) is None


NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: (
        name
        not in {
            "and",
            "or",
            "not",
            "in",
            "is",
            "if",
            "else",
            "true",
            "false",
            "none",
            "True",
            "False",
            "None",
            "loop",
            "caller",
            "varargs",
            "kwargs",
            "self",
        }
    )
)
SEGMENT = st.one_of(NAME, st.integers(min_value=0, max_value=999).map(str))
LOOKUP = st.tuples(NAME, st.lists(SEGMENT, max_size=4)).map(
    lambda parts: ".".join([parts[0], *parts[1]])
)
TEXT = st.text(alphabet="abc XYZ,.:\n-()", max_size=12)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(TEXT, LOOKUP), min_size=1, max_size=4), TEXT)
def test_simple_references_agree_on_generated_lookups(
    pieces: list[tuple[str, str]], tail: str
) -> None:
    source = "".join(f"{text}<< {lookup} >>" for text, lookup in pieces) + tail

    assert fast(source) == full(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("<< ''.__class__ >>", [("__class__", 1)], id="dunder-attribute"),
        pytest.param("x\n<< a['_secret'] >>", [("_secret", 2)], id="private-subscript"),
        pytest.param("<< a.b >> << a[0] >> << a[k] >>", [], id="public-only"),
    ],
)
def test_unsafe_attributes(source: str, expected: list[tuple[str, int]]) -> None:
    assert unsafe_attributes(TEMPLATES.parse(source)) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param((0, "file_url"), None, id="item-field"),
        pytest.param(("0", "file_name"), None, id="item-index-as-text"),
        pytest.param((), None, id="the-list-itself"),
        pytest.param((3,), None, id="any-index"),
        pytest.param((0, "file_url", "upper"), None, id="string-method"),
        pytest.param(
            ("file_url",),
            (
                "hero.output is a list, it has no field 'file_url'",
                "pick an item first: hero.output.0.file_url",
            ),
            id="field-of-the-list",
        ),
        pytest.param(
            (0, "size"),
            ("hero.output.0 has no field 'size'", "fields of hero.output.0: file_url, file_name"),
            id="unknown-field-no-suggestion",
        ),
        pytest.param(
            (0, "file_nam"),
            (
                "hero.output.0 has no field 'file_nam'; did you mean 'file_name'?",
                "use hero.output.0.file_name",
            ),
            id="typo-with-suggestion",
        ),
        pytest.param(
            (0, "file_url", "host"),
            (
                "hero.output.0.file_url is a string, it has no field 'host'",
                "use hero.output.0.file_url itself",
            ),
            id="field-of-a-string",
        ),
    ],
)
def test_check_path_on_a_list_of_assets(
    path: tuple[str | int, ...], expected: tuple[str, str] | None
) -> None:
    assert check_path(ASSETS, path, "hero.output") == expected


def test_check_path_suggests_file_url_for_url() -> None:
    assert check_path(ASSETS, (0, "url"), "hero.output") == (
        "hero.output.0 has no field 'url'; did you mean 'file_url'?",
        "use hero.output.0.file_url",
    )


REF_SCHEMA: dict[str, Any] = {
    "$defs": {
        "Asset": {"type": "object", "properties": {"file_url": {"type": "string"}}},
    },
    "type": "object",
    "properties": {
        "best": {"anyOf": [{"$ref": "#/$defs/Asset"}, {"type": "null"}]},
        "all": {"type": "array", "items": {"$ref": "#/$defs/Asset"}},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        "tags": {"type": "object", "additionalProperties": {"type": "integer"}},
        "free": {},
    },
    "required": ["best"],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(("best", "file_url"), None, id="optional-ref"),
        pytest.param(("all", 0, "file_url"), None, id="list-of-refs"),
        pytest.param(("pair", 1, "upper"), None, id="prefix-item-string-method"),
        pytest.param(("tags", "anything"), None, id="additional-properties"),
        pytest.param(("free", "x", 0, "y"), None, id="untyped-value"),
        pytest.param(("tags", "items"), None, id="dict-method"),
        pytest.param(
            ("best", "file_ur"),
            ("out.best has no field 'file_ur'; did you mean 'file_url'?", "use out.best.file_url"),
            id="through-anyof",
        ),
        pytest.param(
            ("pair", 0, "x"),
            ("out.pair.0 is an integer, it has no field 'x'", "use out.pair.0 itself"),
            id="prefix-item-integer",
        ),
        pytest.param(
            ("tags", "a", "b"),
            ("out.tags.a is an integer, it has no field 'b'", "use out.tags.a itself"),
            id="additional-properties-typed",
        ),
        pytest.param(
            ("nope",),
            ("out has no field 'nope'", "fields of out: best, all, pair, tags, free"),
            id="unknown-top-field",
        ),
    ],
)
def test_check_path_with_refs_unions_and_maps(
    path: tuple[str | int, ...], expected: tuple[str, str] | None
) -> None:
    assert check_path(REF_SCHEMA, path, "out") == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {"type": "string"}, ("x is a string, it has no field 'y'", "use x itself"), id="string"
        ),
        pytest.param(
            {"type": "integer"},
            ("x is an integer, it has no field 'y'", "use x itself"),
            id="integer",
        ),
        pytest.param(
            {"type": "boolean"},
            ("x is a boolean, it has no field 'y'", "use x itself"),
            id="boolean",
        ),
        pytest.param({"type": "object"}, None, id="free-object"),
        pytest.param({}, None, id="anything"),
    ],
)
def test_check_path_on_scalars(schema: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert check_path(schema, ("y",), "x") == expected


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        pytest.param("prodcut", ["product", "count"], "product", id="transposition"),
        pytest.param("templte", ["template"], "template", id="missing-letter"),
        pytest.param("zzz", ["product", "count"], None, id="nothing-close"),
        pytest.param("url", ["file_name", "file_url"], "file_url", id="one-word-of-a-name"),
        pytest.param(
            "name",
            ["file_name", "display_name_long"],
            "file_name",
            id="shortest-name-with-the-word",
        ),
        pytest.param("u", ["u_x"], None, id="one-letter-is-not-a-word-match"),
        pytest.param("x", [], None, id="no-options"),
    ],
)
def test_closest(name: str, options: list[str], expected: str | None) -> None:
    assert closest(name, options) == expected


# -- deep paths and deep templates: loops, not recursion -------------------------------------

#: A tree whose nodes hold nodes: a recursive schema, as a plugin's output model can be.
TREE: dict[str, Any] = {
    "$ref": "#/$defs/Tree",
    "$defs": {
        "Tree": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                "parent": {"anyOf": [{"$ref": "#/$defs/Tree"}, {"type": "null"}]},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(("children", 0) * 3000 + ("name",), None, id="3000-levels-down"),
        pytest.param(("parent",) * 3000 + ("name",), None, id="3000-optional-levels-up"),
        pytest.param(
            ("parent",) * 3000 + ("nme",),
            (
                "t.output" + ".parent" * 3000 + " has no field 'nme'; did you mean 'name'?",
                "use t.output" + ".parent" * 3000 + ".name",
            ),
            id="3000-levels-then-a-typo",
        ),
    ],
)
def test_check_path_follows_a_recursive_schema_to_any_depth(
    path: tuple[str | int, ...], expected: tuple[str, str] | None
) -> None:
    assert check_path(TREE, path, "t.output") == expected


def test_check_path_reports_the_first_branch_of_a_union_that_fails() -> None:
    schema = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]}

    assert check_path(schema, ("x",), "s.output") == (
        "s.output is a string, it has no field 'x'",
        "use s.output itself",
    )
    assert check_path(schema, (0,), "s.output") is None


def test_find_references_in_a_deep_expression() -> None:
    from jinja2 import nodes

    depth = sys.getrecursionlimit()  # deeper than a recursive walk could go
    hero = nodes.Name("hero", "load", lineno=1)
    node: nodes.Expr = nodes.Getattr(hero, "output", "load", lineno=1)
    for _ in range(depth):
        node = nodes.Neg(node, lineno=1)
    private = nodes.Getattr(nodes.Name("brief", "load", lineno=2), "__class__", "load", lineno=2)
    ast = nodes.Template([nodes.Output([node, private], lineno=1)], lineno=1)

    refs = find_references(ast, JINJA_GLOBALS)

    assert [(ref.root, ref.path, ref.lineno) for ref in refs] == [
        ("hero", ("output",), 1),
        ("brief", ("__class__",), 2),
    ]
    assert unsafe_attributes(ast) == [("__class__", 2)]


@pytest.mark.parametrize(
    ("length", "path", "expected"),
    [
        pytest.param(OutputLength(2, ("count",)), (1, "file_url"), None, id="last"),
        pytest.param(OutputLength(2, ("count",)), (-2,), None, id="first-from-the-end"),
        pytest.param(OutputLength(2, ("count",)), ("file_url",), None, id="not-an-index"),
        pytest.param(OutputLength(2, ("count",)), (), None, id="the-whole-list"),
        pytest.param(
            OutputLength(2, ("count",)),
            (2,),
            (
                "hero.output has 2 items (set by count), so there is no item 2",
                "use an index from 0 to 1 (or -2 to -1), or change count",
            ),
            id="one-past",
        ),
        pytest.param(
            OutputLength(2, ("count",)),
            ("7",),
            (
                "hero.output has 2 items (set by count), so there is no item 7",
                "use an index from 0 to 1 (or -2 to -1), or change count",
            ),
            id="index-as-text",
        ),
        pytest.param(
            OutputLength(0, ("images",)),
            (0,),
            (
                "hero.output has 0 items (set by images), so there is no item 0",
                "change images, or do not read an item of hero.output",
            ),
            id="empty",
        ),
        pytest.param(OutputLength(None, ("count",), at_most=10), (9,), None, id="templated-9"),
        pytest.param(OutputLength(None, ("count", "images")), (99,), None, id="unbounded"),
        pytest.param(
            OutputLength(None, ("count", "images"), at_most=4),
            (-5,),
            (
                "hero.output has at most 4 items (count and images are templates), so there "
                "is no item -5",
                "use an index below 4; the exact number is known only once count and images "
                "are rendered, when the step runs",
            ),
            id="templated-past-the-bound",
        ),
    ],
)
def test_check_index(
    length: OutputLength, path: tuple[str | int, ...], expected: tuple[str, str] | None
) -> None:
    assert check_index(length, path, "hero.output") == expected


@pytest.mark.parametrize(
    ("source", "path"),
    [
        pytest.param("<< hero.output[-1].file_url >>", ("output", -1, "file_url"), id="neg"),
        pytest.param("<< hero.output[-1 - 1] >>", ("output",), id="neg-expression"),
        pytest.param('<< hero.output[-"a"] >>', ("output",), id="neg-text"),
    ],
)
def test_negative_constant_indexes_are_part_of_the_path(
    source: str, path: tuple[str | int, ...]
) -> None:
    assert full(source) == [("hero", path, 1)]


def test_missing_item_names_the_reference_that_reads_past_a_list() -> None:
    scope = {"hero": {"output": [{"file_url": "a"}]}, "inputs": {"tags": ["x", "y"]}}
    refs = simple_references("<< hero.output.0.file_url >> << inputs.tags.2 >>", frozenset())
    assert refs is not None

    assert missing_item(refs, scope) == (
        '"inputs.tags.2": inputs.tags has 2 items, so there is no item 2'
    )
    assert missing_item(refs[:1], scope) is None


@pytest.mark.parametrize(
    ("source", "guarded"),
    [
        pytest.param("<< hero.output[5] >>", [False], id="plain"),
        pytest.param("<% if x %><< hero.output[5] >><% endif %>", [False, True], id="if-body"),
        pytest.param(
            "<% if x %><% else %><< hero.output[5] >><% endif %>", [False, True], id="else"
        ),
        pytest.param("<< hero.output[5] if x else 1 >>", [False, True], id="cond-expr"),
        pytest.param("<< x and hero.output[5] >>", [False, True], id="and-right"),
        pytest.param("<< hero.output[5] | default(1) >>", [True], id="default-filter"),
        pytest.param("<< hero.output[5] | upper >>", [False], id="other-filter"),
        pytest.param("<< hero.output[5] is defined >>", [True], id="is-defined"),
    ],
)
def test_references_read_under_a_condition_are_guarded(source: str, guarded: list[bool]) -> None:
    ast = TEMPLATES.parse(source)

    assert [ref.guarded for ref in find_references(ast, JINJA_GLOBALS)] == guarded
