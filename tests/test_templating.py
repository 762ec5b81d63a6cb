"""The template environment: syntax, native values, sandbox, strictness, includes."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from fetchflow.templating import JINJA_GLOBALS, Templates, canonical, is_template, to_text

TEMPLATES = Path(__file__).parent / "data" / "templates"

HERO_OUTPUT = [{"file_url": "s3://b/k.png", "file_name": "k.png"}]
ANGLES = ["front", "side"]
SCOPE: dict[str, object] = {
    "inputs": {"product": "mug", "count": 3, "angles": ANGLES, "raw": "[1, 2]"},
    "hero": {"output": HERO_OUTPUT},
    "brief": {"output": "A mug."},
}


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates([TEMPLATES])


def test_jinja_globals_equal_the_environment_globals() -> None:
    assert set(Templates([]).env.globals) == JINJA_GLOBALS


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("<<hero.output>>", HERO_OUTPUT, id="list-is-native"),
        pytest.param("<< inputs.count >>", 3, id="integer-is-native"),
        pytest.param("<< inputs.angles >>\n", ["front", "side"], id="trailing-newline-dropped"),
        pytest.param("{{ inputs.count }}", 3, id="curly-expression-is-native"),
        pytest.param("<< inputs.count + 1 >>", 4, id="arithmetic"),
        pytest.param("<< inputs.raw >>", "[1, 2]", id="string-that-looks-like-a-list-stays-text"),
        pytest.param("<< '42' >>", "42", id="string-that-looks-like-a-number-stays-text"),
    ],
)
def test_one_expression_renders_to_the_native_value(
    templates: Templates, source: str, expected: object
) -> None:
    assert templates.render(source, SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("Angles: << inputs.angles >>", 'Angles: ["front", "side"]', id="list-as-json"),
        pytest.param("n=<< inputs.count >>", "n=3", id="number-as-json"),
        pytest.param("<< inputs.product >>!", "mug!", id="string-as-is"),
        pytest.param(
            "<< hero.output.0 >> ok",
            '{"file_url": "s3://b/k.png", "file_name": "k.png"} ok',
            id="object-as-json",
        ),
        pytest.param("<< inputs.count >> << inputs.count >>", "3 3", id="two-expressions"),
        pytest.param("{{ inputs.product }} {# note #}x", "mug x", id="curly-forms"),
        pytest.param("<% for a in inputs.angles %><< a >>,<% endfor %>", "front,side,", id="loop"),
        pytest.param("<# c #>é << 'ü' >>", "é ü", id="non-ascii-kept"),
    ],
)
def test_expressions_inside_text_give_text(
    templates: Templates, source: str, expected: str
) -> None:
    assert templates.render(source, SCOPE) == expected


def test_statement_lines_are_trimmed(templates: Templates) -> None:
    source = "<% for a in inputs.angles %>\n- << a >>\n<% endfor %>\nend"

    assert templates.render(source, SCOPE) == "- front\n- side\nend"


def test_rendered_values_are_never_rendered_again(templates: Templates) -> None:
    scope = {"inputs": {"sneaky": "<< 1 + 1 >> {{ 2 * 2 }}"}}

    assert templates.render("<< inputs.sneaky >>", scope) == "<< 1 + 1 >> {{ 2 * 2 }}"
    assert templates.render("say << inputs.sneaky >>", scope) == "say << 1 + 1 >> {{ 2 * 2 }}"
    rendered = templates.render_value({"a": ["<< inputs.sneaky >>"]}, scope)
    assert rendered == {"a": ["<< 1 + 1 >> {{ 2 * 2 }}"]}


def test_render_value_renders_templates_inside_lists_and_mappings(templates: Templates) -> None:
    value = {"n": "<< inputs.count >>", "items": ["<< inputs.product >>", "plain", 7], "x": None}

    assert templates.render_value(value, SCOPE) == {
        "n": 3,
        "items": ["mug", "plain", 7],
        "x": None,
    }


def test_include_from_the_search_path(templates: Templates) -> None:
    rendered = templates.render('Intro. <% include "brand.j2" %>', {"inputs": {"brand": "acme"}})

    assert rendered == "Intro. Brand: acme, soft light."


def test_render_file_renders_a_file_with_its_includes(templates: Templates) -> None:
    scope = {"inputs": {"product": "mug", "brand": "acme"}}

    assert templates.render_file("caption.j2", scope) == "Meet the mug.\nBrand: acme, soft light."


def test_file_source_gives_the_text_and_full_path(templates: Templates) -> None:
    source, filename = templates.file_source("brand.j2")

    assert source.startswith("<# Included by flows/include.yaml. #>")
    assert Path(filename) == TEMPLATES / "brand.j2"


def test_missing_template_file_raises_template_not_found(templates: Templates) -> None:
    with pytest.raises(TemplateNotFound, match=r"no_such\.j2"):
        templates.render_file("no_such.j2", SCOPE)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        pytest.param("<< ''.__class__ >>", "__class__", id="dunder-attribute"),
        pytest.param("<< inputs.angles.append('x') >>", "append", id="mutating-method"),
        pytest.param("<< inputs.__class__.__mro__ >>", "__class__", id="dunder-chain"),
    ],
)
def test_sandbox_refuses_unsafe_access_at_render(
    templates: Templates, source: str, match: str
) -> None:
    with pytest.raises(SecurityError, match=match):
        templates.render(source, SCOPE)
    assert ANGLES == ["front", "side"]


@pytest.mark.parametrize(
    ("source", "match"),
    [
        pytest.param("<< nothing >>", "'nothing' is undefined", id="undefined-name-alone"),
        pytest.param("a << nothing >>", "'nothing' is undefined", id="undefined-name-in-text"),
        pytest.param(
            "<< inputs.missing >>", "has no attribute 'missing'", id="undefined-attribute"
        ),
        pytest.param("<< hero.output.5 >>", "no element 5", id="index-out-of-range"),
    ],
)
def test_undefined_values_raise(templates: Templates, source: str, match: str) -> None:
    with pytest.raises(UndefinedError, match=match):
        templates.render(source, SCOPE)


def test_syntax_error_raises_with_its_line(templates: Templates) -> None:
    with pytest.raises(TemplateSyntaxError, match="unexpected 'end of print statement'") as caught:
        templates.parse("line one\n<< inputs.x > >>")

    assert caught.value.lineno == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("<< x >>", True, id="value"),
        pytest.param("<% if x %>y<% endif %>", True, id="statement"),
        pytest.param("<# note #>", True, id="comment"),
        pytest.param("{{ x }}", True, id="curly-value"),
        pytest.param("{% if x %}{% endif %}", True, id="curly-statement"),
        pytest.param("{# note #}", True, id="curly-comment"),
        pytest.param("plain text with < and > and {braces}", False, id="plain"),
    ],
)
def test_is_template(value: str, expected: bool) -> None:
    assert is_template(value) is expected


def test_canonical_rewrites_the_curly_forms() -> None:
    assert (
        canonical("{{ a }} {% if b %}{# c #}{% endif %}") == "<< a >> <% if b %><# c #><% endif %>"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("text", "text", id="string"),
        pytest.param(3, "3", id="int"),
        pytest.param([1, "é"], '[1, "é"]', id="list"),
        pytest.param({"a": None}, '{"a": null}', id="mapping"),
        pytest.param(True, "true", id="bool"),
    ],
)
def test_to_text(value: object, expected: str) -> None:
    assert to_text(value) == expected
