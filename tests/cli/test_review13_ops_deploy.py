"""``fetchflow deploy --job-variables``: every value Prefect or a worker cannot use is one
message before Prefect (review 13).

Before: nested arrays past Python's recursion limit and a lone surrogate (``"\\ud800"``)
were "internal error" (exit 1); ``NaN``/``Infinity`` (not JSON) were deployed as ``null``;
an ``env`` name that is empty or holds ``=``, or a value holding NUL, was deployed and
failed every run on the worker (no process can be given such a variable).
"""

from __future__ import annotations

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    REPO,
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

HELLO = str(REPO / "flows" / "hello.yaml")
EXAMPLE = (
    """  hint: give a JSON object, e.g. --job-variables '{"env": {"FETCHFLOW_HOME": "/srv/ff"}}'"""
)
NAME_HINT = (
    """  hint: name each variable with no "=" (e.g. {"env": {"FETCHFLOW_STORE": """
    """"s3://bucket/prefix"}})"""
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "[" * 100_000,
            ["--job-variables: nested too deeply", EXAMPLE],
            id="nested-too-deeply",
        ),
        pytest.param(
            '{"replicas": NaN}',
            [
                "--job-variables: not JSON: NaN is not a JSON value",
                "  hint: write a number, or the value as a string",
            ],
            id="nan",
        ),
        pytest.param(
            '{"cpu": -Infinity}',
            [
                "--job-variables: not JSON: -Infinity is not a JSON value",
                "  hint: write a number, or the value as a string",
            ],
            id="infinity",
        ),
        pytest.param(
            '{"env": {"A": "\\ud800"}}',
            [
                "--job-variables: holds a lone surrogate (\\ud800-\\udfff), which is not text",
                "  hint: write the character itself, or both halves of its surrogate pair",
            ],
            id="lone-surrogate",
        ),
        pytest.param(
            '{"env": {"": "x"}}',
            ['--job-variables: field "env": "" is not an environment variable name', NAME_HINT],
            id="empty-env-name",
        ),
        pytest.param(
            '{"env": {"A=B": "x"}}',
            ['--job-variables: field "env": "A=B" is not an environment variable name', NAME_HINT],
            id="env-name-with-equals",
        ),
        pytest.param(
            '{"env": {"FETCHFLOW_HOME": "/srv\\u0000/ff"}}',
            [
                '--job-variables: field "env": the value of FETCHFLOW_HOME holds a NUL '
                "character (\\u0000), which no environment variable can hold",
                "  hint: remove it from the value",
            ],
            id="nul-in-env-value",
        ),
    ],
)
def test_job_variables_no_worker_can_use_exit_2_before_prefect(
    value: str,
    expected: list[str],
    sandbox: Sandbox,  # noqa: F811
) -> None:
    outcome = sandbox.fetchflow("deploy", HELLO, "--pool", "images", "--job-variables", value)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == expected
    sandbox.assert_nothing_happened(outcome)
