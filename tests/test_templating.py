"""The template environment: syntax, native values, sandbox, strictness, includes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from fetchflow.errors import TemplateError
from fetchflow.template_limits import LIMITS_HINT, TemplateLimitError
from fetchflow.templating import JINJA_GLOBALS, Templates, canonical, is_template, to_text
from fetchflow.workflow.template_checks import LIMITS_HINT as STATIC_LIMITS_HINT

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


# -- limits: what a template may build and how long it may work ------------------------------

BIG = 10**10


@pytest.mark.parametrize(
    ("source", "match"),
    [
        pytest.param("<< 'a' * 10**10 >>", r"^'\*' would make a value of 10000000000 ", id="mul"),
        pytest.param(
            "<< ['a'] * inputs.big >>", r"^'\*' would make a value of 20000000000 ", id="list-mul"
        ),
        pytest.param(
            "<< [[[1]*1000]*1000]*1000 >>", r"^'\*' would make a value of 1002000 ", id="nested-mul"
        ),
        pytest.param(
            "<< 7 ** (10**9) >>",
            r"^'\*\*' would make an integer of about 3000000000 bits",
            id="pow",
        ),
        pytest.param(
            "<% set ns = namespace(s='ab') %><% for i in range(64) %><% set ns.s = ns.s ~ ns.s %>"
            "<% endfor %>",
            r"^'~' would make a value of 1048576 ",
            id="doubling-concat",
        ),
        pytest.param(
            "<% set ns = namespace(s=[1]) %><% for i in range(64) %><% set ns.s = ns.s + ns.s %>"
            "<% endfor %>",
            r"^'\+' would make a value of 1048576 ",
            id="doubling-list",
        ),
        pytest.param(
            "<< ('a' * 100000)|replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') >>",
            r"^the filter replace would make a value of 3600000 ",
            id="replace-filter",
        ),
        pytest.param(
            "<< ('a' * 99999).replace('a', 'bb' * 999) >>",
            r"^str.replace\(\) would",
            id="replace-method",
        ),
        pytest.param("<< 'a'|center(inputs.big) >>", r"^the filter center would", id="center"),
        pytest.param("<< 'a'.ljust(inputs.big) >>", r"^str.ljust\(\) would", id="ljust"),
        pytest.param("<< '0'.zfill(inputs.big) >>", r"^str.zfill\(\) would", id="zfill"),
        pytest.param(
            "<< ('\t' * 9999).expandtabs(9999) >>", r"^str.expandtabs\(\) would", id="expandtabs"
        ),
        pytest.param("<< ('a\n' * 9999)|indent(9999) >>", r"^the filter indent would", id="indent"),
        pytest.param(
            "<< range(99999)|join('x' * 99) >>", r"^the filter join would", id="join-filter"
        ),
        pytest.param(
            "<< ('x' * 999).join(range(9999)|map('string')|list) >>",
            r"^str.join\(\) would",
            id="join-method",
        ),
        pytest.param(
            "<< ('a' * 9999)|wordwrap(1, wrapstring='b' * 999) >>",
            r"^the filter wordwrap would",
            id="wordwrap",
        ),
        pytest.param(
            "<< [1]|batch(inputs.big, 'x')|list >>", r"^the filter batch would", id="batch"
        ),
        pytest.param(
            "<< [1]|slice(inputs.big, 'x')|list >>", r"^the filter slice would", id="slice"
        ),
        pytest.param(
            "<< '%*s' % (inputs.big, 'x') >>", r"^a '\*' width in '%' would", id="printf-star"
        ),
        pytest.param(
            "<< '%9999999999s' % 'x' >>", r"^the width 9999999999 in '%' would", id="printf-width"
        ),
        pytest.param(
            "<< '%9999999999s'|format('x') >>",
            r"^the width 9999999999 in '%' would",
            id="format-filter",
        ),
        pytest.param(
            "<< '{:>9999999999}'.format('x') >>",
            r"^the width 9999999999 in a format spec",
            id="str-format",
        ),
        pytest.param(
            "<< '{:>{w}}'.format('x', w=inputs.big) >>",
            r"^the width 10000000000 in a format spec",
            id="str-format-nested-width",
        ),
        pytest.param("<< lipsum(inputs.big) >>", r"^lipsum\(\) would", id="lipsum"),
        pytest.param("<< range(inputs.big) >>", r"^Range too big", id="range"),
        pytest.param(
            "<% set a = [1] * 999 %><% set b = [a, a, a, a, a, a, a, a, a, a] %>"
            "<% set c = [b, b, b, b, b, b, b, b, b, b] %>"
            "<< [c, c, c, c, c, c, c, c, c, c]|length >>",
            r"^a list or mapping would make a value over 1000000 ",
            id="nested-literals",
        ),
        pytest.param(
            "<% for i in range(99999) %><% for j in range(99999) %><% endfor %><% endfor %>",
            r"^the template made more than 100000 loop steps and calls$",
            id="nested-loops",
        ),
        pytest.param(
            "<% macro f(n) %><< f(n) >><< f(n) >><% endmacro %><< f(1) >>",
            r"^the template nests too deeply",
            id="recursive-macro",
        ),
        pytest.param(
            "<% for i in range(9999) %><< 'x' * 999 >><% endfor %>",
            r"^the template wrote more than 1000000 characters$",
            id="output",
        ),
    ],
)
def test_a_template_past_the_limits_is_refused_before_it_builds(
    templates: Templates, source: str, match: str
) -> None:
    started = time.monotonic()

    with pytest.raises(TemplateLimitError, match=match) as refused:
        templates.render(source, {"inputs": {"big": BIG}})

    # Refused before it builds: far sooner than building it would take (a generous bound
    # for a loaded 2-core machine).
    assert time.monotonic() - started < 30
    assert refused.value.hint == LIMITS_HINT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("<< 'ab' * 3 >>", "ababab", id="small-mul"),
        pytest.param("<< 2 ** 100 >>", 2**100, id="big-enough-int"),
        pytest.param("<< '%5s' % 'x' >>", "    x", id="printf"),
        pytest.param("<< '{:>5}'.format('x') >>", "    x", id="str-format"),
        pytest.param("<< 'a' ~ 'b' ~ 1 >>", "ab1", id="concat"),
        pytest.param("<< [1, 2] + [3] >>", [1, 2, 3], id="list-plus"),
        pytest.param("<< {'a': (1, 2)} >>", {"a": (1, 2)}, id="literals"),
        pytest.param("<% for a in [1, 2] %><< loop.index >><% endfor %>", "12", id="loop"),
        pytest.param("<< range(3)|join(', ') >>", "0, 1, 2", id="join"),
        pytest.param("<< 'a b'|center(7) >>", "  a b  ", id="center"),
        pytest.param("<< ('x' * 999999)|length >>", 999999, id="at-the-size-limit"),
    ],
)
def test_templates_within_the_limits_render_as_before(
    templates: Templates, source: str, expected: object
) -> None:
    assert templates.render(source, SCOPE) == expected


def test_each_render_has_its_own_budget(templates: Templates) -> None:
    source = "<% for i in range(60000) %><% endfor %>done"

    assert [templates.render(source, {}) for _ in range(3)] == ["done"] * 3


def test_a_template_file_past_the_limits_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "bomb.j2").write_text("<< 'a' * inputs.big >>", encoding="utf-8")

    with pytest.raises(TemplateError) as refused:
        Templates([tmp_path]).render_file("bomb.j2", {"inputs": {"big": BIG}})

    assert str(refused.value) == (
        "template file \"bomb.j2\": template refused: '*' would make a value of 10000000000 "
        "characters or items, over the limit of 1000000\n  hint: " + LIMITS_HINT
    )


def test_the_static_limits_hint_is_the_sandbox_one() -> None:
    assert STATIC_LIMITS_HINT == LIMITS_HINT
