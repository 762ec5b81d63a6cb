"""The provider retry loop and call limit, pure: a fake clock and sleep, scripted failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fetchflow.errors import ProviderError, StepError
from steps.imaging.providers.errors import RateLimited
from steps.imaging.providers.retrying import (
    ProviderGate,
    RetryPolicy,
    backoff_delay,
    call_with_retries,
    provider_semaphore,
)

ENDPOINT = "https://api.openai.com/v1/images/generations"
LOGGER = "fetchflow.test.retrying"


@dataclass
class FakeTime:
    """A clock that only moves when the loop sleeps."""

    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Script:
    """A call that raises the scripted errors in turn, then returns ``"done"``."""

    errors: list[BaseException]
    calls: int = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def server_error(status: int = 500) -> ProviderError:
    return ProviderError(
        message=f"openai {ENDPOINT}: {status} server_error: server error: sorry",
        hint="OpenAI had a problem answering",
        provider="openai",
        endpoint=ENDPOINT,
        status=status,
    )


def rate_limited(retry_after: float | None) -> RateLimited:
    return RateLimited(
        message=f"openai {ENDPOINT}: 429 rate_limit_exceeded: rate limited: slow down",
        hint="wait and try again",
        provider="openai",
        endpoint=ENDPOINT,
        status=429,
        retry_after=retry_after,
    )


def refusal(status: int, code: str) -> ProviderError:
    return ProviderError(
        message=f"openai {ENDPOINT}: {status} {code}: refused",
        hint="retrying will not help",
        provider="openai",
        endpoint=ENDPOINT,
        status=status,
        retryable=False,
    )


def timeout() -> ProviderError:
    return ProviderError(
        message=f"openai {ENDPOINT}: no answer within 120 s",
        hint="the provider is slow",
        provider="openai",
        endpoint=ENDPOINT,
    )


def garbled() -> ProviderError:
    return ProviderError(
        message=f"openai {ENDPOINT}: image 1 of 1 is not valid base64",
        hint="trying again usually helps",
        provider="openai",
        endpoint=ENDPOINT,
        status=200,
    )


def run(
    script: Script,
    fake: FakeTime,
    *,
    attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: float = 0.0,
) -> str:
    return call_with_retries(
        script,
        attempts=attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=lambda: jitter,
        sleep=fake.sleep,
        clock=fake.clock,
        logger=logging.getLogger(LOGGER),
        describe="image 1 of 1",
    )


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# -- what is retried, and how long it waits -------------------------------------------------


def test_a_first_success_makes_one_call_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    script, fake = Script([]), FakeTime()
    assert run(script, fake) == "done"
    assert (script.calls, fake.slept, retry_lines(caplog)) == (1, [], [])


def test_a_429_waits_what_retry_after_asks_and_logs_the_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    script, fake = Script([rate_limited(3.0)]), FakeTime()

    assert run(script, fake) == "done"

    assert script.calls == 2
    assert fake.slept == [3.0]  # Retry-After beats the 0.5 s backoff
    assert retry_lines(caplog) == [
        f"attempt 2/4 after 429 from openai {ENDPOINT}: waiting 3 s (image 1 of 1)",
        "attempt 2/4 succeeded after 3.0 s (image 1 of 1)",
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_a_short_retry_after_still_waits_the_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    script, fake = Script([rate_limited(0.2)]), FakeTime()
    run(script, fake, jitter=0.5)
    assert fake.slept == [0.75]  # max(0.2, 1 s * (0.5 + 0.5 * 0.5))
    assert "waiting 0.75 s (image 1 of 1)" in retry_lines(caplog)[0]


@pytest.mark.parametrize(
    ("jitter", "waits"),
    [
        pytest.param(0.0, [0.5, 1.0, 2.0], id="least-jitter"),
        pytest.param(0.5, [0.75, 1.5, 3.0], id="middle"),
        pytest.param(0.999, [0.9995, 1.999, 3.998], id="most-jitter"),
    ],
)
def test_5xx_back_off_exponentially_with_jitter(jitter: float, waits: list[float]) -> None:
    script, fake = Script([server_error(500), server_error(503), server_error(500)]), FakeTime()
    assert run(script, fake, jitter=jitter) == "done"
    assert script.calls == 4
    assert fake.slept == pytest.approx(waits)


def test_waits_are_capped_by_max_delay() -> None:
    script, fake = Script([server_error()] * 4), FakeTime()
    run(script, fake, attempts=5, max_delay=1.5, jitter=0.5)
    assert fake.slept == [0.75, 1.5, 1.5, 1.5]


def test_the_backoff_spreads_over_half_to_all_of_its_doubling() -> None:
    for retry in (1, 2, 3):
        low = backoff_delay(retry, base_delay=2.0, jitter=0.0)
        high = backoff_delay(retry, base_delay=2.0, jitter=0.9999999)
        assert (low, high) == pytest.approx((2.0 ** (retry - 1), 2.0**retry))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(server_error, id="500"),
        pytest.param(timeout, id="timeout"),
        pytest.param(garbled, id="garbled-answer"),
        pytest.param(lambda: rate_limited(None), id="429-without-retry-after"),
    ],
)
def test_retryable_failures_then_success(fault: Callable[[], ProviderError]) -> None:
    script, fake = Script([fault(), fault()]), FakeTime()
    assert run(script, fake) == "done"
    assert script.calls == 3 and len(fake.slept) == 2


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(refusal(400, "moderation_blocked"), id="moderation"),
        pytest.param(refusal(429, "insufficient_quota"), id="insufficient-quota"),
        pytest.param(refusal(401, "invalid_api_key"), id="auth"),
        pytest.param(refusal(400, "invalid_value"), id="validation"),
        pytest.param(StepError(message="a bad answer"), id="step-error"),
        pytest.param(ValueError("a bug"), id="not-ours"),
    ],
)
def test_refusals_and_other_errors_are_raised_at_once_unchanged(error: BaseException) -> None:
    script, fake = Script([error]), FakeTime()
    with pytest.raises(type(error)) as caught:
        run(script, fake)
    assert caught.value is error
    assert (script.calls, fake.slept) == (1, [])


# -- giving up ------------------------------------------------------------------------------


def test_exhausted_attempts_say_how_many_how_long_and_the_last_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    last = server_error(503)
    script, fake = (
        Script([server_error(500), rate_limited(None), server_error(500), last]),
        FakeTime(),
    )

    with pytest.raises(
        ProviderError,
        match=r"^openai https://api.openai.com/v1/images/generations: 503 server_error: server "
        r"error: sorry \(gave up after 4 attempts in 3.5 s; last: 503\)\n"
        r"  hint: OpenAI had a problem answering; FETCHFLOW_PROVIDER_ATTEMPTS allows more "
        r"attempts$",
    ) as caught:
        run(script, fake)

    error = caught.value
    assert type(error) is ProviderError and error.__cause__ is last
    assert (error.status, error.provider, error.endpoint, error.retryable) == (
        503,
        "openai",
        ENDPOINT,
        False,  # the loop owns provider retries: a step's retries must not repeat it
    )
    assert script.calls == 4 and fake.slept == [0.5, 1.0, 2.0]
    assert [line.split(":")[0] for line in retry_lines(caplog)] == [
        "attempt 2/4 after 500 from openai https",
        "attempt 3/4 after 429 from openai https",
        "attempt 4/4 after 500 from openai https",
    ]


@pytest.mark.parametrize(
    ("fault", "last"),
    [
        pytest.param(timeout, "no answer", id="timeout"),
        pytest.param(garbled, "an unusable answer", id="garbled"),
        pytest.param(lambda: rate_limited(0.1), "429", id="rate-limited"),
    ],
)
def test_the_last_failure_is_named_when_there_was_no_status(
    fault: Callable[[], ProviderError], last: str
) -> None:
    script = Script([fault(), fault()])
    with pytest.raises(ProviderError, match=rf"gave up after 2 attempts in .* s; last: {last}\)"):
        run(script, FakeTime(), attempts=2)


def test_a_rate_limit_keeps_its_type_and_retry_after_when_exhausted() -> None:
    with pytest.raises(RateLimited) as caught:
        run(Script([rate_limited(0.1)]), FakeTime(), attempts=1)
    assert caught.value.retry_after == 0.1
    assert "(gave up after 1 attempt in 0.0 s; last: 429)" in caught.value.message
    assert caught.value.retryable is False


def test_a_retry_after_longer_than_max_delay_gives_up_saying_how_long() -> None:
    script, fake = Script([server_error(), rate_limited(90.0)]), FakeTime()

    with pytest.raises(
        RateLimited,
        match=r"rate limited: slow down \(not retried: the provider asked to wait 90 s, "
        r"longer than the 60 s allowed; 2 attempts made\)\n"
        r"  hint: wait 90 s and run again, allow longer waits with "
        r"FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS, or run fewer image steps at once",
    ) as caught:
        run(script, fake)

    assert script.calls == 2 and fake.slept == [0.5]
    assert caught.value.retry_after == 90.0 and caught.value.retryable is False


def test_attempts_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        run(Script([]), FakeTime(), attempts=0)


def test_a_policy_passes_its_parts_to_the_loop() -> None:
    fake = FakeTime()
    policy = RetryPolicy(
        attempts=2, base_delay=0.25, max_delay=5, jitter=lambda: 0.0, sleep=fake.sleep
    )
    script = Script([server_error()])
    assert policy.call(script, logger=logging.getLogger(LOGGER), describe="") == "done"
    assert fake.slept == [0.125]
    with pytest.raises(ProviderError, match=r"gave up after 2 attempts"):
        policy.call(Script([server_error()] * 2), logger=logging.getLogger(LOGGER), describe="")


# -- the per-provider call limit ------------------------------------------------------------


def test_one_semaphore_per_provider_and_size() -> None:
    first = provider_semaphore("test-provider-a", 3)
    assert provider_semaphore("test-provider-a", 3) is first
    assert provider_semaphore("test-provider-b", 3) is not first
    resized = provider_semaphore("test-provider-a", 5)
    assert resized is not first and provider_semaphore("test-provider-a", 5) is resized
    with pytest.raises(ValueError, match="at least 1, got 0"):
        provider_semaphore("test-provider-a", 0)


def test_the_preview_provider_and_no_limit_pass_freely() -> None:
    for gate in (ProviderGate("preview", 1), ProviderGate("test-provider-free", None)):
        with gate.slot(), gate.slot():  # nested: would deadlock with a limit of 1
            pass
        assert gate.limit is None


def test_a_gate_never_lets_more_calls_through_than_its_limit() -> None:
    in_flight = peak = 0
    lock = threading.Lock()
    start = threading.Barrier(6)

    def call() -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1

    def worker() -> None:
        gate = ProviderGate("test-provider-limit", 2)
        start.wait()
        for _ in range(3):
            gate.run(call)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert peak == 2


def test_waiting_for_a_slot_is_logged_once_per_gate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    holder = ProviderGate("test-provider-busy", 1)
    waiter = ProviderGate("test-provider-busy", 1, logging.getLogger(LOGGER))
    for _ in range(2):  # twice the slot is taken when the waiter asks
        taken, release = threading.Event(), threading.Event()

        def hold(taken: threading.Event = taken, release: threading.Event = release) -> None:
            with holder.slot():
                taken.set()
                release.wait(5)

        thread = threading.Thread(target=hold)
        thread.start()
        taken.wait(5)
        threading.Timer(0.05, release.set).start()
        waiter.run(lambda: None)
        thread.join(5)
    with waiter.slot():  # a free slot: nothing to say
        pass
    assert retry_lines(caplog) == [
        "waiting for a free test-provider-busy slot: 1 calls at a time "
        "(FETCHFLOW_PROVIDER_CONCURRENCY)"
    ]
