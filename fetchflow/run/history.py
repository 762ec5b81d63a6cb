"""Past runs as the asset store records them: list them, describe one, export its files.

Plain data, no Prefect: everything comes from the run state documents every run writes to
the store (:mod:`fetchflow.run.checkpoints`), so every machine sharing ``FETCHFLOW_STORE``
sees the same history, whichever machine ran what.

Listing stays fast with many runs: the store is listed once (``runs/``), every
``run.json`` is read (they are needed to sort by start; on S3 one GET each, 16 at a time
by a pool of threads, in this thread for a local store), and only the runs shown
(``limit``) have their step documents read, for their image count and cost. No index
document: one more thing every run would have to update, from several machines at once,
and get wrong when one dies.
"""

from __future__ import annotations

import json
import mimetypes
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeGuard
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from fetchflow.errors import StorageError, UsageError
from fetchflow.matrix_grid import is_contact_sheet
from fetchflow.run.checkpoints import SavedRun, is_stale, run_key
from fetchflow.storage.keys import sha256_hex
from fetchflow.storage.spool import write_atomically

if TYPE_CHECKING:
    from fetchflow.storage import AssetStore

__all__ = [
    "ExportFile",
    "Exported",
    "RunDetail",
    "RunListing",
    "RunSummary",
    "StepDetail",
    "asset_records",
    "check_run_id",
    "describe_run",
    "export_files",
    "files_to_export",
    "latest_runs",
    "list_runs",
    "local_link",
]

#: What a run id may look like (Prefect's are UUIDs): never a path.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
#: A file name extension we write as is.
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}")
#: Most state documents read at the same time (S3: GETs in flight).
READ_THREADS = 16
#: A first read quicker than this is local: the rest are read in this thread.
LOCAL_READ_SECONDS = 0.002

_EPOCH = datetime.min.replace(tzinfo=UTC)


def is_asset(value: object) -> TypeGuard[dict[str, object]]:
    """Whether ``value`` is an asset record (a stored file: it has a ``storage_uri``)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("storage_uri"), str)
        and isinstance(value.get("sha256"), str)
    )


def asset_records(output: object) -> list[dict[str, object]]:
    """The asset records in a step's output (a record, or a list holding some), in order."""
    if is_asset(output):
        return [output]
    if isinstance(output, list):
        return [item for item in output if is_asset(item)]
    return []


def _merged(output: object, kept: Iterable[object]) -> list[dict[str, object]]:
    """A step's records and the paid items it kept, each file once, in order."""
    merged: list[dict[str, object]] = []
    seen: set[tuple[object, object]] = set()
    for item in [*asset_records(output), *(item for item in kept if is_asset(item))]:
        key = (item.get("sha256"), item.get("file_name"))
        if key not in seen:
            seen.add(key)
            merged.append(item)
    return merged


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _heartbeat_seconds(record: Mapping[str, object], setting: float) -> float:
    """This machine's heartbeat period, or the run's own (``heartbeat_seconds`` in its
    record) when longer: a run with a slow heartbeat is never judged by a faster one."""
    theirs = _number(record.get("heartbeat_seconds")) or 0.0
    return max(setting, theirs)


def check_run_id(run_id: str, store: AssetStore, what: str = "run") -> None:
    """Refuse a run id that cannot be one (``fetchflow show ../x``) before touching the store.

    Raises:
        UsageError: It is not a run id; the hint lists the latest runs.
    """
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"{what} {run_id!r} is not a run id",
            "give the id fetchflow run printed (▶ workflow · run <id>) or `fetchflow runs` "
            f"lists; latest runs in {store.describe()}: {latest_runs(store)}",
        )


def latest_runs(store: AssetStore, count: int = 3) -> str:
    """The ids of the latest runs the store has, for hints (``none yet`` when none)."""
    try:
        listing = list_runs(store, limit=count, with_steps=False)
    except StorageError:
        return "the store cannot be listed"
    return ", ".join(f"{run.run_id} ({run.workflow})" for run in listing.runs) or "none yet"


# -- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One line of ``fetchflow runs``.

    Attributes:
        run_id: The run (its Prefect flow run id).
        workflow: The workflow's name.
        file: The workflow file as the run was given it.
        status: completed, partial, failed, interrupted, running, or dead (a ``running``
            record whose heartbeat stopped: its machine or process died).
        message: Why it ended, as the run said.
        started_at: When its (latest) attempt started.
        ended_at: When it ended (None while running or when it died).
        heartbeat_at: Its last sign of life.
        images: Asset records in its steps' outputs (and paid images of unfinished steps),
            contact sheets left out (each is a picture of the others, as the gallery says).
        cost_usd: What the images this run made cost, when their records say (None: not
            recorded); images reused from another run count for that run.
        host: The machine of its latest attempt.
        attempt: Which attempt of the run that is.
        resumed_from: The run it resumed, if any.
    """

    run_id: str
    workflow: str
    file: str
    status: str
    message: str
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    images: int | None
    cost_usd: float | None
    host: str
    attempt: int | None
    resumed_from: str | None

    @property
    def seconds(self) -> float | None:
        """How long it ran: to its end, or to its last heartbeat when it died."""
        end = self.ended_at or (self.heartbeat_at if self.status == "dead" else None)
        if self.started_at is None:
            return None
        if end is None:
            return (datetime.now(UTC) - self.started_at).total_seconds()
        return max(0.0, (end - self.started_at).total_seconds())

    def to_json(self) -> dict[str, object]:
        """The ``--json`` shape of one run."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "file": self.file,
            "status": self.status,
            "message": self.message,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "seconds": self.seconds,
            "images": self.images,
            "cost_usd": self.cost_usd,
            "host": self.host,
            "attempt": self.attempt,
            "resumed_from": self.resumed_from,
        }


@dataclass(frozen=True)
class RunListing:
    """What ``fetchflow runs`` shows.

    Attributes:
        store: Where the runs are (the store's description).
        runs: The latest runs, newest first, at most the limit.
        total: How many runs (of that workflow, when one was asked for) the store has.
        unreadable: Keys of run records that could not be read (skipped).
    """

    store: str
    runs: list[RunSummary]
    total: int
    unreadable: list[str] = field(default_factory=list)


@dataclass
class _Keys:
    """One run's state documents, from the listing."""

    record: bool = False
    steps: dict[str, str] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)


def _keys_by_run(keys: Iterable[str]) -> dict[str, _Keys]:
    runs: dict[str, _Keys] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) < 3 or parts[0] != "runs" or not key.endswith(".json"):
            continue
        found = runs.setdefault(parts[1], _Keys())
        if len(parts) == 3 and parts[2] == "run.json":
            found.record = True
        elif len(parts) == 4 and parts[2] == "steps":
            found.steps[parts[3].removesuffix(".json")] = key
        elif len(parts) == 5 and parts[2] == "kept":
            found.kept.setdefault(parts[3], []).append(key)
    return runs


def _read_many(
    store: AssetStore, keys: Sequence[str], threads: int = READ_THREADS
) -> dict[str, dict[str, object] | StorageError | None]:
    """Every document at ``keys``, read by a pool of threads (an error stays its key's)."""

    def read(key: str) -> dict[str, object] | StorageError | None:
        try:
            return store.get_state(key)
        except StorageError as error:
            return error

    if not keys:
        return {}
    # Threads pay off only when a read waits on the network (S3: one GET each); a local
    # read is done in microseconds and threads only contend for the GIL. The first read
    # tells which.
    started = time.perf_counter()
    first = {keys[0]: read(keys[0])}
    rest = keys[1:]
    if threads <= 1 or len(rest) <= 1 or time.perf_counter() - started < LOCAL_READ_SECONDS:
        return first | {key: read(key) for key in rest}
    with ThreadPoolExecutor(max_workers=min(threads, len(rest))) as pool:
        return first | dict(zip(rest, pool.map(read, rest), strict=True))


def _status(record: Mapping[str, object], heartbeat_seconds: float, now: datetime) -> str:
    status = str(record.get("status") or "running")
    if status == "running" and is_stale(record, _heartbeat_seconds(record, heartbeat_seconds), now):
        return "dead"
    return status


def _images_and_cost(
    run_id: str,
    record: Mapping[str, object],
    steps: Mapping[str, Mapping[str, object] | None],
    kept: Mapping[str, Sequence[object]],
) -> tuple[int, float | None]:
    images = 0
    cost: float | None = None
    for step_id in {*steps, *kept}:
        document = steps.get(step_id) or {}
        output = document.get("output")
        records = (
            asset_records(output)
            if document.get("status") == "completed"
            else _merged(output, kept.get(step_id, []))
        )
        images += sum(1 for item in records if not is_contact_sheet(item))
        for item in records:
            price = _number(item.get("cost_usd"))
            if price is not None and item.get("run_id") == run_id:
                cost = (cost or 0.0) + price
    recorded = _number(record.get("cost_usd"))
    return images, recorded if recorded is not None else cost


def _summary(
    run_id: str,
    record: Mapping[str, object],
    status: str,
    images: int | None,
    cost: float | None,
) -> RunSummary:
    attempt = record.get("attempt")
    resumed = record.get("resumed_from")
    return RunSummary(
        run_id=str(record.get("run_id") or run_id),
        workflow=str(record.get("workflow") or "?"),
        file=str(record.get("file") or ""),
        status=status,
        message=str(record.get("message") or ""),
        started_at=_time(record.get("started_at")),
        ended_at=_time(record.get("ended_at")),
        heartbeat_at=_time(record.get("heartbeat_at")),
        images=images,
        cost_usd=cost,
        host=str(record.get("host") or ""),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        resumed_from=resumed if isinstance(resumed, str) else None,
    )


def list_runs(
    store: AssetStore,
    *,
    workflow: str | None = None,
    limit: int | None = 20,
    heartbeat_seconds: float = 10.0,
    now: datetime | None = None,
    with_steps: bool = True,
    threads: int = READ_THREADS,
) -> RunListing:
    """The latest runs in ``store``, newest first.

    Args:
        store: The asset store holding the run records.
        workflow: Only this workflow's runs.
        limit: At most this many (None: all).
        heartbeat_seconds: ``FETCHFLOW_HEARTBEAT_SECONDS``: a ``running`` record older
            than 6 times this (or than 6 of the run's own) is ``dead``.
        now: The time to judge heartbeats by (tests).
        with_steps: Read the shown runs' step documents for their images and cost (False:
            both None, one listing and the run records only).
        threads: Most documents read at the same time.

    Raises:
        StorageError: The store cannot be listed.
    """
    now = now or datetime.now(UTC)
    by_run = _keys_by_run(store.list_state("runs/"))
    record_keys = [run_key(run_id) for run_id, keys in by_run.items() if keys.record]
    documents = _read_many(store, record_keys, threads)
    unreadable: list[str] = []
    records: list[tuple[str, dict[str, object]]] = []
    for key, document in documents.items():
        if isinstance(document, StorageError):
            unreadable.append(key)
        elif document is not None and (workflow is None or document.get("workflow") == workflow):
            records.append((key.split("/")[1], document))
    records.sort(
        key=lambda pair: (_time(pair[1].get("started_at")) or _EPOCH, pair[0]), reverse=True
    )
    shown = records if limit is None else records[:limit]
    step_documents: dict[str, dict[str, object] | StorageError | None] = {}
    kept_documents: dict[str, dict[str, object] | StorageError | None] = {}
    if with_steps:
        step_documents = _read_many(
            store, [key for run_id, _ in shown for key in by_run[run_id].steps.values()], threads
        )
        unfinished = [
            key
            for run_id, _ in shown
            for step_id, keys in by_run[run_id].kept.items()
            if not _completed(step_documents.get(by_run[run_id].steps.get(step_id, "")))
            for key in keys
        ]
        kept_documents = _read_many(store, unfinished, threads)
    runs: list[RunSummary] = []
    for run_id, record in shown:
        images: int | None = None
        cost: float | None = _number(record.get("cost_usd"))
        if with_steps:
            keys = by_run[run_id]
            steps = {
                step_id: _document(step_documents.get(key)) for step_id, key in keys.steps.items()
            }
            kept = {
                step_id: [
                    document["item"]
                    for key in sorted(keys)
                    if (document := _document(kept_documents.get(key))) and "item" in document
                ]
                for step_id, keys in keys.kept.items()
            }
            images, cost = _images_and_cost(run_id, record, steps, kept)
        runs.append(_summary(run_id, record, _status(record, heartbeat_seconds, now), images, cost))
    return RunListing(store.describe(), runs, len(records), sorted(unreadable))


def _document(value: dict[str, object] | StorageError | None) -> dict[str, object] | None:
    return value if isinstance(value, dict) else None


def _completed(value: dict[str, object] | StorageError | None) -> bool:
    return isinstance(value, dict) and value.get("status") == "completed"


# -- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepDetail:
    """One step of a run, as ``fetchflow show`` prints it.

    Attributes:
        step_id: The step.
        status: completed, failed, skipped, ``not finished`` (no result recorded, but it
            kept paid images: it was cut short) or ``not started``.
        attempts: How many times it was tried.
        seconds: How long it ran.
        reused: Where its output came from when it did not run (resume, cache hit).
        error: Why it failed or was skipped.
        output: Its output as recorded (JSON data).
        images: Its asset records (for a step that did not complete, with what it kept).
    """

    step_id: str
    status: str
    attempts: int
    seconds: float
    reused: str | None
    error: str | None
    output: object
    images: list[dict[str, object]]


@dataclass(frozen=True)
class RunDetail:
    """One run and its steps, in the workflow's order when its file is at hand (the same
    version), else in the order they ended.

    Attributes:
        summary: The run as ``fetchflow runs`` lists it.
        inputs: The inputs it ran with.
        steps: Its steps.
        store: Where it is (the store's description).
    """

    summary: RunSummary
    inputs: dict[str, object]
    steps: list[StepDetail]
    store: str


def _file_order(record: Mapping[str, object]) -> list[str]:
    """The step ids in the run's workflow file, when that file is here and unchanged."""
    import yaml

    path = Path(str(record.get("file") or ""))
    try:
        data = path.read_bytes() if record.get("file") else b""
    except OSError:
        return []
    if not data or sha256_hex(data) != record.get("workflow_sha256"):
        return []
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError:
        return []
    steps = loaded.get("steps") if isinstance(loaded, dict) else None
    if not isinstance(steps, list):
        return []
    return [str(step["id"]) for step in steps if isinstance(step, dict) and "id" in step]


def _step_order(saved: SavedRun) -> list[str]:
    fingerprints = saved.record.get("fingerprints")
    known = {*saved.steps, *saved.kept, *(fingerprints if isinstance(fingerprints, dict) else {})}
    order = [step_id for step_id in _file_order(saved.record) if step_id in known]
    ended = sorted(
        (step for step in saved.steps if step not in order),
        key=lambda step: (str(saved.steps[step].get("ended_at", "")), step),
    )
    rest = sorted(step for step in known if step not in order and step not in ended)
    return [*order, *ended, *rest]


def _step(saved: SavedRun, step_id: str) -> StepDetail:
    document = saved.steps.get(step_id)
    kept = saved.kept.get(step_id, [])
    if document is None:
        return StepDetail(
            step_id,
            "not finished" if kept else "not started",
            0,
            0.0,
            None,
            None,
            None,
            _merged(None, kept),
        )
    status = str(document.get("status") or "?")
    output = document.get("output")
    attempts = document.get("attempts")
    reused, error = document.get("reused"), document.get("error")
    return StepDetail(
        step_id,
        status,
        attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
        _number(document.get("seconds")) or 0.0,
        reused if isinstance(reused, str) else None,
        error if isinstance(error, str) else None,
        output,
        asset_records(output) if status == "completed" else _merged(output, kept),
    )


def _unknown_run(store: AssetStore, run_id: str) -> UsageError:
    return UsageError(
        f"no run {run_id!r} in the asset store {store.describe()}",
        "give a run that wrote to this store (the same FETCHFLOW_STORE, on any machine); "
        f"latest runs: {latest_runs(store)}",
    )


def describe_run(
    store: AssetStore, run_id: str, *, heartbeat_seconds: float = 10.0, now: datetime | None = None
) -> RunDetail:
    """One run's record and steps from the store.

    Raises:
        UsageError: ``run_id`` is not a run id, or the store has no such run (the hint
            lists the latest runs).
        StorageError: The store cannot be read.
    """
    check_run_id(run_id, store)
    saved = SavedRun.load(store, run_id)
    if saved is None:
        raise _unknown_run(store, run_id)
    steps = [_step(saved, step_id) for step_id in _step_order(saved)]
    images = sum(1 for step in steps for item in step.images if not is_contact_sheet(item))
    _, cost = _images_and_cost(run_id, saved.record, saved.steps, saved.kept)
    status = _status(saved.record, heartbeat_seconds, now or datetime.now(UTC))
    inputs = saved.record.get("inputs")
    return RunDetail(
        _summary(run_id, saved.record, status, images, cost),
        inputs if isinstance(inputs, dict) else {},
        steps,
        store.describe(),
    )


def local_link(store: AssetStore, record: Mapping[str, object]) -> str:
    """Where a terminal opens a stored file: a path for the local store, a fresh link
    (presigned, or the public URL) for S3; the record's own link when this store did not
    write it."""
    uri = str(record.get("storage_uri"))
    try:
        url = store.file_url(uri)
    except StorageError:
        return str(record.get("file_url") or uri)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return url2pathname(unquote(parts.path))
    return url


# -- export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFile:
    """One file ``fetchflow export`` writes.

    Attributes:
        name: Its readable name: ``<step>-<n>.<ext>`` for the step's n-th file (from 1,
            in output order), ``<step>.txt`` for a text output, ``<step>.json`` for other
            data.
        data: Its bytes (a stored file's, checked against its sha256).
        step_id: The step that made it.
        record: Its asset record (None for a text or data output).
    """

    name: str
    data: bytes
    step_id: str
    record: dict[str, object] | None = None


Action = Literal["wrote", "unchanged", "replaced"]


@dataclass(frozen=True)
class Exported:
    """One file as export left it: ``wrote`` (new), ``unchanged`` (the same bytes were
    there), ``replaced`` (different bytes were there, ``--force``)."""

    path: Path
    action: Action
    file: ExportFile


def _extension(record: Mapping[str, object]) -> str:
    suffix = Path(str(record.get("file_name") or "")).suffix
    if _EXTENSION.fullmatch(suffix):
        return suffix.lower()
    guessed = mimetypes.guess_extension(str(record.get("file_type") or ""))
    if guessed and _EXTENSION.fullmatch(guessed):
        return guessed
    suffix = Path(urlsplit(str(record.get("storage_uri"))).path).suffix
    return suffix.lower() if _EXTENSION.fullmatch(suffix) else ".bin"


def _read_checked(store: AssetStore, record: Mapping[str, object], step_id: str) -> bytes:
    """A stored file's bytes through the store, checked against the record's sha256.

    Raises:
        StorageError: It cannot be read, or its bytes are not the record's.
    """
    uri = str(record.get("storage_uri"))
    try:
        data = store.read(uri)
    except StorageError as error:
        error.step_id = error.step_id or step_id
        raise
    if sha256_hex(data) != record.get("sha256"):
        raise StorageError(
            message=f"{uri} does not hold {record.get('file_name')}: its bytes do not match "
            "the sha256 in the run's record",
            hint="the object was replaced; run the step again",
            target=uri,
            step_id=step_id,
            retryable=False,
        )
    return data


def files_to_export(store: AssetStore, detail: RunDetail) -> list[ExportFile]:
    """Every file of a run under its readable name, its bytes read through the store.

    Files: each step's asset records as ``<step>-<n>.<ext>`` (a step cut short: what it
    made and kept; a contact sheet as ``<step>-contact-sheet.png``), a text output as
    ``<step>.txt``, other data (not empty) as ``<step>.json``.

    Raises:
        StorageError: A file cannot be read or does not match its record (nothing is
            written: the caller writes only once every file is read).
    """
    safe = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
    files: list[ExportFile] = []
    for step in detail.steps:
        if not safe.fullmatch(step.step_id):
            continue
        if step.images:
            pictures = (record for record in step.images if not is_contact_sheet(record))
            numbers = {id(record): n for n, record in enumerate(pictures, start=1)}
            for record in step.images:
                # A contact sheet is a picture of the others, not one of them: named so.
                number = numbers.get(id(record), "contact-sheet")
                name = f"{step.step_id}-{number}{_extension(record)}"
                files.append(
                    ExportFile(
                        name, _read_checked(store, record, step.step_id), step.step_id, record
                    )
                )
        elif isinstance(step.output, str):
            text = step.output if step.output.endswith("\n") else f"{step.output}\n"
            files.append(ExportFile(f"{step.step_id}.txt", text.encode(), step.step_id))
        elif step.output not in (None, [], {}) and step.status == "completed":
            data = json.dumps(step.output, indent=2, ensure_ascii=False, default=str) + "\n"
            files.append(ExportFile(f"{step.step_id}.json", data.encode(), step.step_id))
    return files


def export_files(
    files: Sequence[ExportFile],
    folder: Path,
    *,
    force: bool = False,
    refuse: Callable[[list[Path]], UsageError] | None = None,
) -> list[Exported]:
    """Write ``files`` into ``folder`` (made when missing). A file already there with the
    same bytes is left alone; one with other bytes is replaced only with ``force``.

    Raises:
        UsageError: ``folder`` is not a folder, or some files there differ and ``force``
            is off (nothing is written then); ``refuse`` builds that error.
        OSError: Writing failed.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder", "give a folder to write the files into (made if missing)"
        )
    actions: list[tuple[Path, Action, ExportFile]] = []
    differ: list[Path] = []
    for file in files:
        path = folder / file.name
        if path.is_dir():
            raise UsageError(
                f"{path} is a folder, where the file {file.name} goes",
                "export into another folder, or move that folder away",
            )
        if not path.exists():
            actions.append((path, "wrote", file))
        elif path.read_bytes() == file.data:
            actions.append((path, "unchanged", file))
        else:
            actions.append((path, "replaced", file))
            differ.append(path)
    if differ and not force:
        raise (
            refuse(differ)
            if refuse
            else UsageError(
                f"{len(differ)} file(s) in {folder} differ from this run's and were not replaced: "
                + ", ".join(str(path) for path in differ),
                "export into another folder, or add --force to replace them",
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, action, file in actions:
        if action != "unchanged":
            write_atomically(path, file.data)
    return [Exported(path, action, file) for path, action, file in actions]
