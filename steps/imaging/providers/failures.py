"""The one table of provider failures: an HTTP error answer classified, whoever sent it.

Each SDK wrapper reads its exception once into an :class:`HttpFailure` (status, the
provider's code, what it said, the wait it asked for, and the few facts only its answer
shape can tell: an empty quota, a rejected key, a moderation refusal) and names itself with
a :class:`ProviderTerms`; :func:`classify` then decides, for OpenAI and Gemini alike:

==============================================  =========  ===============================
What failed                                     retryable  error
==============================================  =========  ===============================
429, quota used up or zero (billing)            no         the provider's billing hint
429 other (rate limit)                          yes        :class:`.errors.RateLimited`
                                                           with ``retry_after``
a moderation refusal                            no         :class:`.errors.ModerationBlocked`
                                                           with ``stage``, ``categories``
401 / 403, or a key the provider calls invalid  no         hint names where the key came
                                                           from (``OPENAI_API_KEY``, ...)
5xx and the provider's passing statuses (408)   yes        server error
other 4xx                                       no         the provider's message
==============================================  =========  ===============================

Failures without an answer (a timeout, no connection) are :func:`.errors.timed_out` and
:func:`.errors.not_reached`; every text here is already redacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from fetchflow.errors import ProviderError
from steps.imaging.providers.errors import ModerationBlocked, rate_limited

__all__ = ["HttpFailure", "ProviderTerms", "classify"]

_REPHRASE = "rephrase the prompt; the same prompt is refused again, so it is not retried"


@dataclass(frozen=True)
class ProviderTerms:
    """How one provider is named in failure messages, and what its statuses mean.

    Attributes:
        name: The provider's name (``openai``).
        company: Who answers, in the server-error hint (``OpenAI``).
        key_name: Whose key it is, in the rejected-key hint (``OpenAI``, ``Gemini``).
        out_of_quota: The message's words for a quota that retrying cannot help.
        quota_hint: Where to add quota or billing.
        forbidden: The message's words for a 403 (a 401 is always a rejected key).
        forbidden_hint: What else a 403 means for this provider.
        passing_statuses: 4xx statuses besides 429 that a later try can pass (408, 409).
    """

    name: str
    company: str
    key_name: str
    out_of_quota: str
    quota_hint: str
    forbidden: str
    forbidden_hint: str
    passing_statuses: frozenset[int]


@dataclass(frozen=True)
class HttpFailure:
    """An HTTP error answer, read once off the SDK's exception (every text redacted).

    Attributes:
        endpoint: The URL called, as errors show it.
        status: The HTTP status.
        code: The provider's code word (``insufficient_quota``, ``RESOURCE_EXHAUSTED``), or "".
        said: The provider's message.
        body: The start of the answer's body.
        retry_after: Seconds the provider asked to wait, or None.
        quota_exhausted: A 429 that is a quota used up or of zero, not a busy minute.
        key_invalid: The provider says the key is invalid (besides a 401 or 403).
        moderation: Set for a moderation refusal: its details (`` (stage: input)``) or "".
        param: The request parameter the provider complains about, or None.
        moderation_stage: A moderation refusal's stage (``input``, ``output``), or "".
        moderation_categories: The categories a moderation refusal named.
    """

    endpoint: str
    status: int
    code: str
    said: str
    body: str
    retry_after: float | None = None
    quota_exhausted: bool = False
    key_invalid: bool = False
    moderation: str | None = None
    param: str | None = None
    moderation_stage: str = ""
    moderation_categories: tuple[str, ...] = ()


def classify(failure: HttpFailure, terms: ProviderTerms, *, key_source: str) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error answer (the module's table).

    Args:
        failure: What the answer said.
        terms: Who answered.
        key_source: Where the key came from (``OPENAI_API_KEY``, a Secret block), for hints.
    """
    status = failure.status
    head = f"{terms.name} {failure.endpoint}: {status}" + (
        f" {failure.code}" if failure.code else ""
    )

    def fail(what: str, hint: str, *, retryable: bool) -> ProviderError:
        return ProviderError(
            message=f"{head}: {what}",
            hint=hint,
            retryable=retryable,
            provider=terms.name,
            endpoint=failure.endpoint,
            status=status,
            body=failure.body,
        )

    if status == 429 and failure.quota_exhausted:
        return fail(f"{terms.out_of_quota}: {failure.said}", terms.quota_hint, retryable=False)
    if status == 429:
        return rate_limited(
            head,
            failure.said,
            provider=terms.name,
            endpoint=failure.endpoint,
            status=status,
            body=failure.body,
            wait=failure.retry_after,
        )
    if failure.moderation is not None:
        output = failure.moderation_stage == "output"
        what = "withheld the image made" if output else "refused the prompt"
        return ModerationBlocked(
            message=f"{head}: the safety system {what}{failure.moderation}",
            hint=_REPHRASE,
            provider=terms.name,
            endpoint=failure.endpoint,
            status=status,
            body=failure.body,
            stage=failure.moderation_stage,
            categories=failure.moderation_categories,
        )
    if status in (401, 403) or failure.key_invalid:
        reason = terms.forbidden if status == 403 else "the API key was rejected"
        return fail(
            f"{reason}: {failure.said}",
            f"check the {terms.key_name} key in {key_source} (where this step's charge_type "
            f"took it from); 403 also means {terms.forbidden_hint}",
            retryable=False,
        )
    if status >= 500 or status in terms.passing_statuses:
        return fail(
            f"server error: {failure.said}",
            f"{terms.company} had a problem answering; run again later",
            retryable=True,
        )
    param = f" (param: {failure.param})" if failure.param else ""
    return fail(
        failure.said, f"fix the request the provider complains about{param}", retryable=False
    )
