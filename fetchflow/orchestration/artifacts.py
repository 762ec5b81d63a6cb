"""What a run shows in the Prefect UI besides its task runs: artifacts, published.

- Each step's output, on its task run, one markdown artifact: for asset records a gallery
  (inline thumbnails, each linking to the full file) and a table of the files; otherwise
  the output as text (trimmed).
- The run summary, on the flow run: the steps with status, time, images, usage and cost.
- Progress of a step that makes several files (:class:`StepProgress`), with the latest draft
  of each file as a small inline thumbnail while it is being made (the partial images an
  OpenAI stream sends); drafts live only in the artifact, never in the store or the output.

Keys are ``<workflow>-<step>-output``, ``<workflow>-<step>-progress`` and
``<workflow>-run-summary`` (see :func:`artifact_key`); a key groups the same artifact across
runs on Prefect's Artifacts page. The content is made by
:mod:`fetchflow.run.artifact_content`. A display problem never fails a step or a run: it is
a warning in the run's log. Prefect is imported only by the functions that talk to it.

Publishing is off the steps' critical path when asked (``background=True``): one publisher
thread per process renders (thumbnails included) and sends, in order, while the steps go on;
:func:`publish_run_summary` waits for it (:func:`drain_publisher`) before the summary, so a
run's artifacts are all there when it ends.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fetchflow.run.artifact_content import (
    ThumbnailCache,
    asset_records,
    error_text,
    render_gallery,
    render_output,
    render_summary,
    render_text_outputs,
    thumbnail_uri,
)

if TYPE_CHECKING:
    from uuid import UUID

    from fetchflow.run.report import RunReport

__all__ = [
    "StepProgress",
    "artifact_key",
    "drain_publisher",
    "publish_run_summary",
    "publish_step_output",
]

#: Longest key we make (Prefect sets no limit; long keys only clutter the Artifacts page).
MAX_KEY_LENGTH = 100
#: Largest artifact body sent; anything bigger is left out with a warning.
MAX_ARTIFACT_CHARS = 1_000_000
#: Longest side of a draft's thumbnail in a progress artifact (a few KB each).
PREVIEW_PX = 128

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
ArtifactType = Literal["markdown", "table", "progress"]


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key made of ``parts``: lowercase ``a-z``, digits, dashes.

    Accents are dropped (``café`` -> ``cafe``), every other run of characters becomes one
    dash; an empty result is ``fetchflow``; keys over :data:`MAX_KEY_LENGTH` are cut and
    end with a hash of the whole, so distinct long keys stay distinct.
    """
    text = unicodedata.normalize("NFKD", "-".join(parts)).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "fetchflow"
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = key[: MAX_KEY_LENGTH - 9].rstrip("-") + "-" + digest
    return key


# -- the publisher thread -------------------------------------------------------------------


class _Publisher:
    """One daemon thread that runs publishing jobs in order, each in the context (Prefect
    settings, run context) of the thread that submitted it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[contextvars.Context, Callable[[], object]]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], object]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="fetchflow-artifacts", daemon=True
                )
                self._thread.start()
        self._jobs.put((contextvars.copy_context(), job))

    def drain(self, timeout: float) -> bool:
        """Wait until every job submitted so far is done; False after ``timeout`` s."""
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)

    def _work(self) -> None:
        while True:
            context, job = self._jobs.get()
            try:
                context.run(job)
            except Exception:  # pragma: no cover - jobs log their own failures
                logging.getLogger(__name__).warning("artifact job failed", exc_info=True)


_PUBLISHER = _Publisher()


@functools.cache
def _thumbnails(folder: Path | None) -> ThumbnailCache:
    """This process's thumbnails kept in ``folder``, by content: a cache hit's gallery (and
    the same file in a later run) makes none."""
    return ThumbnailCache(folder)


#: Longest wait for the artifacts still being published when a run ends.
DRAIN_TIMEOUT_SECONDS = 60.0


def drain_publisher(timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
    """Wait until the artifacts submitted in the background so far are published.

    Returns:
        False when some were still pending after ``timeout`` seconds.
    """
    return _PUBLISHER.drain(timeout)


# -- publishing (Prefect) -------------------------------------------------------------------


def _logger() -> Logger:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _run_ids() -> tuple[UUID | None, UUID | None]:
    """(task run id, flow run id) of the current Prefect context, where there is one."""
    from prefect.context import FlowRunContext, TaskRunContext

    task_context = TaskRunContext.get()
    if task_context is not None:
        return task_context.task_run.id, task_context.task_run.flow_run_id
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        return None, flow_context.flow_run.id
    return None, None


def _create(
    kind: ArtifactType,
    key: str,
    data: object,
    description: str,
    ids: tuple[UUID | None, UUID | None],
    logger: Logger,
) -> UUID | None:
    """Create one artifact; None (and a warning) when it could not be."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    if ids == (None, None):
        logger.warning("artifact %s not published: not inside a Prefect run", key)
        return None
    if isinstance(data, str) and len(data) > MAX_ARTIFACT_CHARS:
        logger.warning("artifact %s not published: %d characters is too large", key, len(data))
        return None
    try:
        with get_client(sync_client=True) as client:
            created: Any = client.create_artifact(
                artifact=ArtifactCreate(
                    key=key,
                    type=kind,
                    description=description,
                    data=data,
                    task_run_id=ids[0],
                    flow_run_id=ids[1],
                )
            )
    except Exception as error:  # a display problem must never fail the run
        logger.warning("artifact %s not published: %s", key, error_text(error))
        return None
    artifact_id: UUID = created.id
    return artifact_id


def publish_step_output(
    *,
    workflow: str,
    step_id: str,
    step_title: str,
    step_type: str,
    output: object,
    read_bytes: Callable[[str], bytes] | None,
    links: Callable[[str], str] | None = None,
    background: bool = False,
    thumbnail_dir: Path | None = None,
    notes: Sequence[str] = (),
    combinations: Sequence[Mapping[str, object]] = (),
) -> list[str]:
    """Publish a step's output as an artifact of the current task run.

    Call it inside the step's task run. Asset records (a list of record dicts) give a
    gallery with a table of the files (``<workflow>-<step>-output``); any other output
    gives a markdown artifact of the output (the same key), trimmed.

    Args:
        workflow: The workflow's name.
        step_id: The step's id.
        step_title: The step's readable name.
        step_type: The step's type.
        output: The step's output as JSON data.
        read_bytes: Reads a file's bytes by ``storage_uri`` (the run's store), for thumbnails.
        links: Maps a record's ``file_url`` to the link the UI shows (the local store's file
            server: :func:`fetchflow.orchestration.file_server.public_links`); None: as is.
        background: Render and send in the publisher thread, off the step's critical path
            (:func:`drain_publisher` waits for it); only where the run's flow runs in this
            process.
        thumbnail_dir: Where thumbnails are kept between runs (``<home>/thumbnails``);
            None keeps them in this process only.
        notes: What the step warned about, listed under a gallery's table.
        combinations: A matrix step's every combination (the grid keeps a row or column
            whose combinations made nothing, as empty cells).

    Returns:
        The key of the artifact (to be) created; none when it could not be (a failure is a
        logged warning, never raised; in the background it is only logged).
    """
    logger = _logger()
    ids = _run_ids()
    key = artifact_key(workflow, step_id, "output")

    def publish() -> bool:
        try:
            records = asset_records(output)
            if records is None:
                text = render_output(
                    output, step_id=step_id, step_title=step_title, step_type=step_type
                )
                description = f"Output of {step_id}"
            else:
                text = render_gallery(
                    records,
                    step_id=step_id,
                    step_title=step_title,
                    step_type=step_type,
                    read_bytes=read_bytes,
                    warn=logger.warning,
                    thumbnails=_thumbnails(thumbnail_dir),
                    links=links,
                    notes=notes,
                    combinations=combinations,
                )
                description = f"Files made by {step_id}"
        except Exception as error:  # a display problem must never fail the step
            logger.warning(
                "output of %s not published: %s", step_id, error_text(error), exc_info=True
            )
            return False
        return _create("markdown", key, text, description, ids, logger) is not None

    if background and ids != (None, None):
        _PUBLISHER.submit(publish)
        return [key]
    return [key] if publish() else []


def publish_run_summary(
    report: RunReport,
    *,
    step_titles: Mapping[str, str],
    step_types: Mapping[str, str],
    seconds: float | None = None,
) -> str | None:
    """Publish the run summary (``<workflow>-run-summary``) on the current flow run.

    Call it in the flow body once the steps have settled: it first waits for the artifacts
    still being published in the background (:func:`drain_publisher`).

    Returns:
        The artifact's key, or None when it could not be published (logged as a warning).
    """
    logger = _logger()
    if not drain_publisher():
        logger.warning("some step artifacts were still being published when the run ended")
    key = artifact_key(report.workflow, "run-summary")
    try:
        text = render_summary(
            report, step_titles=step_titles, step_types=step_types, seconds=seconds
        )
    except Exception as error:  # a display problem must never fail the run
        logger.warning("run summary not published: %s", error_text(error), exc_info=True)
        return None
    description = f"{report.workflow}: {report.status}"
    published = _create("markdown", key, text, description, _run_ids(), logger)
    _publish_text_outputs(report, step_titles=step_titles, step_types=step_types)
    return key if published else None


def _publish_text_outputs(
    report: RunReport, *, step_titles: Mapping[str, str], step_types: Mapping[str, str]
) -> None:
    """The run's text outputs as one markdown artifact (``<workflow>-text-outputs``)."""
    logger = _logger()
    try:
        text = render_text_outputs(report, step_titles=step_titles, step_types=step_types)
    except Exception as error:  # a display problem must never fail the run
        logger.warning("text outputs not published: %s", error_text(error), exc_info=True)
        return
    if text is not None:
        key = artifact_key(report.workflow, "text-outputs")
        _create("markdown", key, text, f"{report.workflow}: text outputs", _run_ids(), logger)


class StepProgress:
    """A progress artifact (``<workflow>-<step>-progress``) for a step that makes many files.

    Create it inside the step's task run (it remembers the run); then :meth:`start` and
    :meth:`advance` may be called from any thread. Updates are throttled to one every
    ``min_interval`` seconds, except the last. A failing update is a warning and turns
    further updates off. With ``background``, the calls to Prefect go through the
    publisher thread (in order), never on the step's own thread.

    Args:
        workflow: The workflow's name.
        step_id: The step's id.
        min_interval: Least seconds between two updates sent to Prefect.
        background: Send from the publisher thread (see :func:`publish_step_output`).
    """

    def __init__(
        self,
        *,
        workflow: str,
        step_id: str,
        min_interval: float = 0.25,
        background: bool = False,
    ) -> None:
        self.key = artifact_key(workflow, step_id, "progress")
        self.total = 0
        self.done = 0
        self._ids = _run_ids()
        self._logger = _logger()
        self._interval = min_interval
        self._background = background and self._ids != (None, None)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._last_sent = -1.0
        self._artifact_id: UUID | None = None
        self._sent_at = 0.0
        self._off = False
        #: item -> (label, bytes) of its latest draft; rendered (and cached) when sent.
        self._drafts: dict[int, tuple[str, bytes]] = {}
        self._thumbs: dict[tuple[int, str], str | None] = {}

    @property
    def percent(self) -> float:
        """How far the step is, 0 to 100."""
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)

    def start(self, total: int) -> None:
        """Publish the artifact at 0 % for ``total`` items."""
        with self._lock:
            self.total, self.done = max(0, total), 0
            self._sent_at = time.monotonic()
            description = self._describe()
        self._run(lambda: self._create(description))

    def advance(self, done: int = 1) -> None:
        """Count ``done`` more items as finished and update the artifact."""
        with self._lock:
            self.done = min(self.total, self.done + done)
            finished = self.done >= self.total
            if self._off or (not finished and time.monotonic() - self._sent_at < self._interval):
                return
            self._sent_at = time.monotonic()
            percent, description = self.percent, self._describe()
        self._run(lambda: self._send(percent, description))

    def preview(self, item: int, label: str, image: bytes) -> None:
        """Show ``image`` as the latest draft of item ``item`` (0-based), e.g. a partial image.

        Not throttled (a provider sends a few per item); the thumbnail is made when the
        update is sent (in the publisher thread with ``background``). The artifact keeps
        each item's latest draft, after the step too; the drafts are never stored.
        """
        with self._lock:
            if self._off:
                return
            self._drafts[item] = (label, image)
            percent, description = self.percent, self._describe()
        self._run(lambda: self._send(percent, description))

    def _drafts_markdown(self) -> str:
        """The latest draft of each item as a row of thumbnails, or "" when there is none."""
        with self._lock:
            drafts = sorted(self._drafts.items())
        cells: list[tuple[str, str, str]] = []
        for item, (label, image) in drafts:
            key = (item, label)
            if key not in self._thumbs:
                try:
                    self._thumbs[key] = thumbnail_uri(image, PREVIEW_PX)
                except Exception as error:  # a draft that is no image: show the others
                    self._logger.warning(
                        "draft of item %d not shown: %s", item + 1, error_text(error)
                    )
                    self._thumbs[key] = None
            uri = self._thumbs[key]
            if uri is not None:
                cells.append((f"image {item + 1}", f"![image {item + 1}, {label}]({uri})", label))
        if not cells:
            return ""
        rows = [
            "| " + " | ".join(cell[0] for cell in cells) + " |",
            "|" + "---|" * len(cells),
            "| " + " | ".join(cell[1] for cell in cells) + " |",
            "| " + " | ".join(cell[2] for cell in cells) + " |",
        ]
        heading = "**Live previews** (partial images as they arrive; not stored):"
        return "\n\n" + heading + "\n\n" + "\n".join(rows)

    def _run(self, job: Callable[[], None]) -> None:
        if self._background:
            _PUBLISHER.submit(job)
        else:
            job()

    def _describe(self) -> str:
        return f"{self.done} of {self.total} done"

    def _create(self, description: str) -> None:
        self._artifact_id = _create("progress", self.key, 0.0, description, self._ids, self._logger)
        self._off = self._artifact_id is None

    def _send(self, percent: float, description: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        if self._artifact_id is None:
            return  # not created (a warning said why)
        # Updates from several threads: one at a time, and never an older one after a newer
        # (the artifact would end below 100 %).
        with self._send_lock:
            if percent < self._last_sent:
                return
            self._last_sent = percent
            description += self._drafts_markdown()  # the latest drafts, whenever sent
            try:
                with get_client(sync_client=True) as client:
                    client.update_artifact(
                        artifact_id=self._artifact_id,
                        artifact=ArtifactUpdate(data=percent, description=description),
                    )
            except Exception as error:  # progress is a display: never fail the step for it
                self._logger.warning("progress of %s not updated: %s", self.key, error_text(error))
                self._off = True
