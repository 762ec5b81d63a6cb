"""Which step types have a tag concurrency limit, read from the session's Prefect server.

Limits are made the ways an operator makes them (``prefect concurrency-limit create``, the
v1 client call, a global limit named ``tag:<tag>``), each on its own tag so the tests do not
see each other's. The last test shows why it matters: a task tagged only when its tag is
limited still honours a limit of 1 (two tasks run one after the other), and an unlimited one
asks for nothing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fetchflow.orchestration.limits import limited_tags

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from fetchflow.registry import StepRegistry

pytestmark = pytest.mark.prefect


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(prefect_api: str) -> Iterator[SyncPrefectClient]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as opened:
        yield opened


@pytest.fixture
def cleanup(client: SyncPrefectClient) -> Iterator[list[str]]:
    """Names of v2 limits to delete after the test."""
    names: list[str] = []
    yield names
    for name in names:
        client.delete_global_concurrency_limit_by_name(name)


def test_no_limit_no_tag(prefect_api: str) -> None:
    assert limited_tags([unique("image_generation"), unique("image_edit")]) == frozenset()


def test_no_candidates_ask_nothing(prefect_api: str) -> None:
    assert limited_tags([]) == frozenset()


def test_a_limit_made_with_the_prefect_cli_is_found(
    prefect_api: str, clean_env: Mapping[str, str], cleanup: list[str]
) -> None:
    limited, other = unique("image_generation"), unique("image_edit")
    cleanup.append(f"tag:{limited}")
    env = {**clean_env, "PREFECT_API_URL": prefect_api, "PREFECT_CLI_PROMPT": "false"}
    made = subprocess.run(
        [sys.executable, "-m", "prefect", "concurrency-limit", "create", limited, "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr

    assert limited_tags([limited, other]) == {limited}


def test_v1_and_global_tag_limits_count_and_an_untagged_global_one_does_not(
    client: SyncPrefectClient, cleanup: list[str]
) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    v1, v2, plain, switched_off = (unique(t) for t in ("v1", "v2", "plain", "off"))
    cleanup.extend([f"tag:{v1}", f"tag:{v2}", plain, f"tag:{switched_off}"])
    client.create_concurrency_limit(tag=v1, concurrency_limit=3)
    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=f"tag:{v2}", limit=1))
    # A global limit without the tag: prefix is not what the task engine acquires for a tag.
    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=plain, limit=1))
    client.create_global_concurrency_limit(
        GlobalConcurrencyLimitCreate(name=f"tag:{switched_off}", limit=1, active=False)
    )

    found = limited_tags([v1, v2, plain, switched_off, unique("none")], client=client)

    assert found == {v1, v2, switched_off}


def test_more_limits_than_one_page(client: SyncPrefectClient, cleanup: list[str]) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    prefix = unique("many")
    tags = [f"{prefix}-{n:03d}" for n in range(130)]
    for tag in tags:
        cleanup.append(f"tag:{tag}")
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=f"tag:{tag}", limit=1)
        )

    assert limited_tags([tags[0], tags[-1], f"{prefix}-x"], client=client) == {tags[0], tags[-1]}


def test_an_api_that_cannot_be_read_keeps_every_tag(prefect_api: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    tags = {unique("image_generation"), unique("image_edit")}
    started = time.monotonic()
    with temporary_settings(updates={PREFECT_API_URL: gone}):
        assert limited_tags(tags) == tags
    assert time.monotonic() - started < 30


def test_a_task_tagged_only_when_limited_still_honours_a_limit_of_one(
    client: SyncPrefectClient, cleanup: list[str]
) -> None:
    from prefect import flow, task

    limited, free = unique("image_generation"), unique("template")
    cleanup.append(f"tag:{limited}")
    client.create_concurrency_limit(tag=limited, concurrency_limit=1)

    def hold(seconds: float) -> tuple[float, float]:
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()

    @flow
    def two_of_each() -> dict[str, list[tuple[float, float]]]:
        tagged = limited_tags([limited, free])  # once per run, as the scheduler does
        spans: dict[str, list[tuple[float, float]]] = {}
        for kind in (limited, free):
            step = task(name=kind, tags=[kind] if kind in tagged else None)(hold)
            futures = [step.submit(1.0) for _ in range(2)]
            spans[kind] = [future.result() for future in futures]
        return spans

    spans = two_of_each()

    first, second = sorted(spans[limited])
    assert second[0] >= first[1] - 0.05, "the limit of 1 let both run at once"
    first, second = sorted(spans[free])
    assert second[0] < first[1], "an unlimited type ran one at a time"


def task_tags(client: SyncPrefectClient, run_id: str) -> list[list[str]]:
    """The tags of a flow run's task runs, once the server has recorded them."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + 30
    while True:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)])),
            sort=TaskRunSort.NAME_ASC,
            limit=10,
        )
        if runs or time.monotonic() > deadline:
            return [sorted(run.tags) for run in runs]
        time.sleep(0.2)


def test_a_billable_step_asks_for_a_slot_only_when_its_type_has_a_limit(
    client: SyncPrefectClient, cleanup: list[str], plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    from fetchflow.orchestration.runner import run_plan
    from fetchflow.settings import Settings
    from fetchflow.workflow.checking import check_file

    workflow = tmp_path / "priced.yaml"
    workflow.write_text(
        "name: slots\nsteps:\n  - id: poster\n    type: priced\n    prompt: a poster\n"
        "    count: 1\n    price: 0.01\n",
        encoding="utf-8",
    )
    plan = check_file(workflow, plugin_registry)
    settings = Settings(_env_file=None, home=tmp_path / "home")  # type: ignore[call-arg]

    free = run_plan(plan, {}, settings=settings, drain=True)
    cleanup.append("tag:priced")
    client.create_concurrency_limit(tag="priced", concurrency_limit=50)
    limited = run_plan(plan, {}, settings=settings, drain=True)

    assert (free.status, limited.status) == ("completed", "completed")
    assert task_tags(client, free.run_id) == [[]]  # no limit: no tag, no lease request
    assert task_tags(client, limited.run_id) == [["priced"]]
