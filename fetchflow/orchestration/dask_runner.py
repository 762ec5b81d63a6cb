"""fetchflow's Dask task runner (``FETCHFLOW_TASK_RUNNER=dask`` or ``dask://host:port``).

Imported only when a run uses Dask (``prefect-dask`` is the optional extra
``fetchflow[dask]``; importing it costs ~0.7 s). Its classes live at module level so that a
worker unpickles them by reference. What it adds to Prefect's own ``DaskTaskRunner``:

- **The run's Prefect API goes to the workers.** With no ``PREFECT_API_URL`` (a plain
  ``fetchflow run FILE``) the run's process talks to the temporary server Prefect started
  for it; a worker process would start a temporary server of its own (15-23 s each) and
  record the steps there. When the runner starts (in the flow run, after that server is
  up) it reads the address the run really uses (:func:`run_api_url`), sets it for the
  run's own settings (they travel with every task: workers of a ``dask://`` scheduler get
  it too) and in the environment of the local cluster's worker processes.
- **Prefect's annotations survive the trip.** Prefect 3.9's ``quote`` and
  ``allow_failure`` do not round-trip through pickle (``quote(x)`` comes back as
  ``quote((x,))``) and Dask flattens a tuple holding a future into a plain tuple: they are
  sent as :class:`ShippedQuote` and :class:`ShippedAllowFailure` (the same annotations, with
  the namedtuple API Dask rebuilds and a pickle form that round-trips).
- **Only what a step needs is sent.** Prefect sends the flow with every task (the flow
  run's context); a fetchflow flow's body holds the run's display and report, which do not
  pickle (and need not travel): the workers get a stand-in flow with the same name and
  task runner (:func:`stand_in_flow`).
- **Ctrl-C is the run's.** Local worker processes start with SIGINT ignored: the run's
  process decides what a stop means (no new step starts, steps in flight finish and are
  kept); a worker killed mid-call would lose an image already paid for.
- **A step runs at most once per attempt.** Dask would run a task again on another worker
  after its worker died (``allowed-failures``), paying for the same images twice; the
  local cluster's scheduler allows no such re-run: the step fails and says why.
- **The console stays fetchflow's.** Dask's own log lines follow Prefect's console level
  (``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL``: quiet unless ``fetchflow run --verbose``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable, Iterator
from typing import Any

import dask.config
from distributed import get_worker
from distributed.utils import silence_logging_cmgr
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.annotations import BaseAnnotation, allow_failure, quote
from prefect_dask.task_runners import DaskTaskRunner

__all__ = [
    "FetchflowDaskTaskRunner",
    "ShippedAllowFailure",
    "ShippedQuote",
    "run_api_url",
    "shippable",
]


def run_api_url() -> str:
    """The Prefect API this process's flow run talks to: ``PREFECT_API_URL``, or the
    temporary server Prefect started for it (``http://127.0.0.1:<port>/api``)."""
    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    # In a flow run: the run's own client, made when the temporary server started (the
    # server is one per process, so this never starts a second one).
    return str(get_client(sync_client=True).api_url).rstrip("/")


def _stand_in(**parameters: object) -> None:
    """The body of a stand-in flow: never called (a task never runs its flow)."""


def stand_in_flow(flow: Flow[..., Any]) -> Flow[..., Any]:
    """A flow to send to workers in place of ``flow``: its name, description and task
    runner, with a module-level body (nothing of the run's own process goes along)."""
    return Flow(
        fn=_stand_in,
        name=flow.name,
        description=flow.description,
        task_runner=flow.task_runner,
        validate_parameters=False,
        persist_result=flow.persist_result,
        log_prints=flow.log_prints,
    )


def _console_level() -> int:
    name = os.environ.get("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.WARNING


class _NamedTupleApi:
    """The namedtuple API of a one-value annotation, and a pickle form that round-trips."""

    __slots__ = ()
    _fields = ("value",)
    _field_defaults: dict[str, object] = {}  # noqa: RUF012 (namedtuple API)

    def __getnewargs__(self) -> tuple[Any]:
        return (self[0],)  # type: ignore[index]

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Any:
        (value,) = iterable
        return cls(value)  # type: ignore[call-arg]

    def _asdict(self) -> dict[str, Any]:
        return {"value": self[0]}  # type: ignore[index]

    def _replace(self, **values: Any) -> Any:
        return type(self)(values.get("value", self[0]))  # type: ignore[call-arg,index]


class ShippedQuote(_NamedTupleApi, quote):
    """``quote`` that arrives in a worker as it was sent."""

    __slots__ = ()


class ShippedAllowFailure(_NamedTupleApi, allow_failure):
    """``allow_failure`` that arrives in a worker as it was sent (around the result of the
    future it held)."""

    __slots__ = ()


_SHIPPED: dict[type, type] = {quote: ShippedQuote, allow_failure: ShippedAllowFailure}


def shippable(value: Any) -> Any:
    """``value``, with a top-level ``quote`` or ``allow_failure`` made shippable."""
    if isinstance(value, BaseAnnotation) and type(value) in _SHIPPED:
        return _SHIPPED[type(value)](value.unwrap())
    return value


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while worker processes start: they inherit it, and Python keeps an
    inherited SIG_IGN."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave it as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class FetchflowDaskTaskRunner(DaskTaskRunner):
    """Prefect's Dask task runner, made to work for fetchflow runs (see the module doc).

    Takes ``DaskTaskRunner``'s arguments (``address`` or ``cluster_kwargs``).
    """

    def __enter__(self) -> Any:
        runner = super().__enter__()  # type: ignore[no-untyped-call]
        try:
            get_worker()
        except ValueError:
            pass  # the run's own process
        else:
            return runner  # a worker rebuilding the run's context for a task: as it is
        url = run_api_url()
        self._exit_stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        level = _console_level()
        self._exit_stack.enter_context(silence_logging_cmgr(level))
        if self.address is None and self._cluster is None:
            env = {**(self.cluster_kwargs.get("env") or {}), "PREFECT_API_URL": url}
            self.cluster_kwargs = {**self.cluster_kwargs, "env": env, "silence_logs": level}
        self._sent_flows: dict[int, Flow[..., Any]] = {}
        return runner

    @property
    def client(self) -> Any:
        """The Dask client; the local cluster starts on first use (the first step)."""
        if self._client is not None or self.address is not None or self._cluster is not None:
            return super().client
        with (
            _sigint_ignored(),
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        ):
            return super().client

    def submit(
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: Any = None,
    ) -> Any:
        """Submit a task run, its annotations made shippable."""
        parameters = {name: shippable(value) for name, value in parameters.items()}
        if wait_for is not None:
            wait_for = [shippable(item) for item in wait_for]
        context = FlowRunContext.get()
        if context is None or context.flow is None:
            return super().submit(task, parameters, wait_for, dependencies)
        flow = context.flow
        sent = self._sent_flows.get(id(flow))
        if sent is None:
            sent = self._sent_flows[id(flow)] = stand_in_flow(flow)
        # The context the task's run is serialized from, with the stand-in flow in it.
        with context.model_copy(update={"flow": sent}):
            return super().submit(task, parameters, wait_for, dependencies)
