"""Which step types have a Prefect tag concurrency limit, asked once per run.

Prefect's task engine asks the server for a concurrency lease for every task run that has
tags (``POST /api/v2/concurrency_limits/increment-with-lease``, names ``tag:<tag>``), even
when no limit exists for any of them: one request per task run, which under load the SQLite
server answers with 503 and the client backs off ~2 s. A billable step only needs its type as
a tag when an operator limited that type (``prefect concurrency-limit create image_generation
2``), so the scheduler asks :func:`limited_tags` once per run and tags only those steps.

How Prefect 3.9 stores tag limits: in the v2 ("global") concurrency limits, named
``tag:<tag>``. ``prefect concurrency-limit create TAG N`` and the v1 API create exactly that
(v1 records older servers kept are migrated to it), and the task engine acquires exactly
those names. So one read of the v2 limits answers for every candidate tag. A limit that is
switched off (``active: false``) still counts: it can be switched on during the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["TAG_LIMIT_PREFIX", "limited_tags"]

#: Prefect names the limit of tag ``t`` ``tag:t`` (what the task engine acquires).
TAG_LIMIT_PREFIX = "tag:"
#: Limits read per request (the server refuses more than its default limit, 200).
_PAGE = 100

logger = logging.getLogger(__name__)


def limited_tags(
    candidates: Iterable[str], client: SyncPrefectClient | None = None
) -> frozenset[str]:
    """The ``candidates`` that have a Prefect tag concurrency limit.

    Call it once per run (a few milliseconds: one request per 100 limits on the server).
    When the API cannot be read, every candidate is returned: the limits that may exist are
    honoured, at the cost of the lease request per task run.

    Args:
        candidates: Tags a run would give its tasks (the billable step types).
        client: A Prefect client to ask with; None opens one for the current API (the run's
            server inside a flow).

    Returns:
        The candidates with a limit, active or not.
    """
    wanted = frozenset(candidates)
    if not wanted:
        return wanted
    try:
        if client is not None:
            names = _limit_names(client)
        else:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as opened:
                names = _limit_names(opened)
    except Exception as error:  # any failure: keep every tag, so no limit is ever skipped
        logger.warning(
            "could not read Prefect's concurrency limits (%s: %s); every billable step asks "
            "for a tag concurrency slot",
            type(error).__name__,
            error,
        )
        return wanted
    return frozenset(
        name.removeprefix(TAG_LIMIT_PREFIX)
        for name in names
        if name.startswith(TAG_LIMIT_PREFIX) and name.removeprefix(TAG_LIMIT_PREFIX) in wanted
    )


def _limit_names(client: SyncPrefectClient) -> list[str]:
    """The names of every v2 concurrency limit on the server, page by page."""
    names: list[str] = []
    offset = 0
    while True:
        page = client.read_global_concurrency_limits(limit=_PAGE, offset=offset)
        names.extend(str(limit.name) for limit in page)
        if len(page) < _PAGE:
            return names
        offset += _PAGE
