"""Calling an image provider politely: our own retry loop and a per-provider call limit.

The SDKs' own retries are off, so every attempt is made (and counted, and logged) here, and
only here: the error this loop raises once it gives up is not ``retryable``, so a step's
``retries`` never repeat the loop. One image call costs at most
``FETCHFLOW_PROVIDER_ATTEMPTS`` requests whatever the step's ``retries`` say.
:func:`call_with_retries` retries only a :class:`~fetchflow.errors.ProviderError` that says
it is ``retryable`` (429, 5xx, timeouts, connection failures, garbled answers) with
exponential backoff and jitter, waiting at least what the provider asked for
(:class:`~steps.imaging.providers.errors.RateLimited` ``retry_after``); a moderation block,
``insufficient_quota``, a rejected key or a bad request fails at once. It is a pure loop:
``sleep``, the clock and the random source are parameters.

:class:`ProviderGate` keeps a fan-out of many image steps from becoming a storm of 429s: a
process-wide bounded semaphore per provider name (:func:`provider_semaphore`) lets at most
``FETCHFLOW_PROVIDER_CONCURRENCY`` calls to one provider be in flight; a slot is held for
one attempt only, never while waiting to retry.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import StreamBroken
from steps.imaging.providers.errors import RateLimited

__all__ = [
    "UNLIMITED_PROVIDERS",
    "ProviderGate",
    "RetryPolicy",
    "StepLogger",
    "backoff_delay",
    "call_with_retries",
    "provider_semaphore",
]

T = TypeVar("T")

#: What a step logs through (``StepContext.logger``: the Prefect run logger during a run).
StepLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: Providers that make no network call, so need no slot.
UNLIMITED_PROVIDERS = frozenset({"preview"})

_LOG = logging.getLogger(__name__)
_ATTEMPTS_SETTING = "FETCHFLOW_PROVIDER_ATTEMPTS"
_MAX_DELAY_SETTING = "FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS"
_CONCURRENCY_SETTING = "FETCHFLOW_PROVIDER_CONCURRENCY"


@dataclass(frozen=True)
class RetryPolicy:
    """How :func:`call_with_retries` retries, with the parts tests replace.

    Attributes:
        attempts: Tries in all, the first included (``FETCHFLOW_PROVIDER_ATTEMPTS``).
        base_delay: Seconds before the first retry; doubled for each further one.
        max_delay: The longest wait (``FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS``).
        jitter: Uniform random numbers in ``[0, 1)``.
        sleep: Waits the given seconds.
        clock: Monotonic seconds, for the time an attempt and the whole call took.
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: Callable[[], float] = random.random
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def call(self, call: Callable[[], T], *, logger: StepLogger, describe: str) -> T:
        """:func:`call_with_retries` with this policy."""
        return call_with_retries(
            call,
            attempts=self.attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            jitter=self.jitter,
            sleep=self.sleep,
            clock=self.clock,
            logger=logger,
            describe=describe,
        )


def backoff_delay(retry: int, *, base_delay: float, jitter: float) -> float:
    """The backoff before retry number ``retry`` (1 for the first), before any cap.

    ``base_delay * 2 ** (retry - 1)``, scaled by a random factor between 0.5 and 1 ("equal
    jitter"): steps that failed together do not all come back at the same instant, and none
    comes back sooner than half the backoff.

    Args:
        retry: 1 for the wait after the first attempt, 2 after the second, ...
        base_delay: Seconds before the first retry.
        jitter: A uniform random number in ``[0, 1)``.
    """
    return base_delay * 2.0 ** (retry - 1) * (0.5 + 0.5 * jitter)


def _failure(error: ProviderError) -> str:
    """What went wrong, in a few words: ``429``, ``an unusable answer``, ``no answer``."""
    if error.status is None:
        return "no answer"  # a timeout or a connection failure: no status came back
    if error.status == 200:
        return "an unusable answer"
    return str(error.status)


def _source(error: ProviderError) -> str:
    """``openai https://...`` as far as the error knows it."""
    return " ".join(part for part in (error.provider, error.endpoint) if part) or "the provider"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int,
    base_delay: float,
    max_delay: float,
    jitter: Callable[[], float] = random.random,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    logger: StepLogger = _LOG,
    describe: str = "",
) -> T:
    """Call ``call`` until it succeeds, fails for good, or ``attempts`` are used up.

    Only a :class:`ProviderError` with ``retryable`` set is retried; anything else is raised
    as it is, at once. Before retry ``n`` the loop waits ``max(retry_after, backoff)``,
    capped at ``max_delay``, where ``backoff`` is :func:`backoff_delay` and ``retry_after``
    what a :class:`RateLimited` error asked for. Each retry is logged at WARNING
    (``attempt 2/4 after 429 from openai https://...: waiting 1.25 s (image 1 of 1)``).

    Args:
        call: One attempt: a provider call raising :class:`ProviderError`.
        attempts: Tries in all, the first included (at least 1).
        base_delay: Seconds before the first retry; doubled for each further one.
        max_delay: The longest wait between two attempts.
        jitter: Uniform random numbers in ``[0, 1)``.
        sleep: Waits the given seconds.
        clock: Monotonic seconds.
        logger: Where attempts are logged (the step's logger).
        describe: What the call is for, added to log lines (``images 1-2 of 3``).

    Returns:
        What the successful attempt returned.

    Raises:
        ProviderError: A refusal (not retryable), raised unchanged; or the last retryable
            error, of the same type and fields, its message saying how many attempts were
            made over how long and the last failure (``gave up after 4 attempts in 7.4 s;
            last: 500``); or a rate limit whose ``retry_after`` is longer than
            ``max_delay``, saying how long the provider asked to wait. Both of these are
            no longer ``retryable``: the attempts were this loop's to make.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    suffix = f" ({describe})" if describe else ""
    started = clock()
    for attempt in range(1, attempts + 1):
        try:
            result = call()
        except ProviderError as error:
            if not error.retryable:
                raise
            elapsed = clock() - started
            asked = error.retry_after if isinstance(error, RateLimited) else None
            if asked is not None and asked > max_delay:
                raise dataclasses.replace(
                    error,
                    message=f"{error.message} (not retried: the provider asked to wait "
                    f"{asked:g} s, longer than the {max_delay:g} s allowed; "
                    f"{_plural(attempt, 'attempt')} made)",
                    hint=f"wait {asked:g} s and run again, allow longer waits with "
                    f"{_MAX_DELAY_SETTING}, or run fewer image steps at once",
                    retryable=False,  # this loop owns provider retries: the step's do not add
                ) from error
            if attempt == attempts:
                raise dataclasses.replace(
                    error,
                    message=f"{error.message} (gave up after {_plural(attempt, 'attempt')} "
                    f"in {elapsed:.1f} s; last: {_failure(error)})",
                    hint=f"{error.hint}; {_ATTEMPTS_SETTING} allows more attempts"
                    if error.hint
                    else f"{_ATTEMPTS_SETTING} allows more attempts",
                    retryable=False,  # this loop owns provider retries: the step's do not add
                ) from error
            wait = min(
                max(asked or 0.0, backoff_delay(attempt, base_delay=base_delay, jitter=jitter())),
                max_delay,
            )
            logger.warning(
                "attempt %d/%d after %s from %s: waiting %s s%s",
                attempt + 1,
                attempts,
                _failure(error),
                _source(error),
                f"{round(wait, 2):g}",  # 0.25, 1.3, 60: as precise as a short wait needs
                suffix,
            )
            if isinstance(error, StreamBroken):  # the retry is paid again: say so
                logger.warning("%s", error.message)
            sleep(wait)
            continue
        if attempt > 1:
            logger.info(
                "attempt %d/%d succeeded after %.1f s%s",
                attempt,
                attempts,
                clock() - started,
                suffix,
            )
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


# -- the per-provider call limit -------------------------------------------------------------

_semaphores: dict[str, tuple[int, threading.BoundedSemaphore]] = {}
_semaphores_lock = threading.Lock()


def provider_semaphore(provider: str, limit: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore of ``provider``, ``limit`` slots wide.

    One process has one setting, so one size per provider; should the size asked differ
    (tests, a reloaded setting), a new semaphore takes over for later callers while the
    calls holding slots of the old one finish against it.

    Args:
        provider: The provider's name (``openai``, ``google``).
        limit: Calls in flight at most (at least 1).
    """
    if limit < 1:
        raise ValueError(f"a provider call limit must be at least 1, got {limit}")
    with _semaphores_lock:
        current = _semaphores.get(provider)
        if current is None or current[0] != limit:
            current = (limit, threading.BoundedSemaphore(limit))
            _semaphores[provider] = current
        return current[1]


class ProviderGate:
    """One step's way through its provider's call limit.

    Args:
        provider: The provider's name; those in :data:`UNLIMITED_PROVIDERS` pass freely.
        limit: Calls to this provider in flight at most, process-wide; ``None``: no limit.
        logger: Where the first wait for a slot is logged (once per gate, at INFO).
    """

    def __init__(self, provider: str, limit: int | None, logger: StepLogger = _LOG) -> None:
        self.provider = provider
        self.limit = None if provider in UNLIMITED_PROVIDERS else limit
        self._semaphore = None if self.limit is None else provider_semaphore(provider, self.limit)
        self._logger = logger
        self._told = False

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the provider's slots for the ``with`` block, waiting for one if needed."""
        semaphore = self._semaphore
        if semaphore is None:
            yield
            return
        if not semaphore.acquire(blocking=False):
            if not self._told:
                self._told = True
                self._logger.info(
                    "waiting for a free %s slot: %d calls at a time (%s)",
                    self.provider,
                    self.limit,
                    _CONCURRENCY_SETTING,
                )
            semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` while holding a slot."""
        with self.slot():
            return call()
