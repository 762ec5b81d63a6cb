"""``fetchflow recover [--watch]``: runs whose machine died end ``Crashed`` and run again.

See :mod:`fetchflow.orchestration.recovery` for how a dead run is told from a live one.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading

from fetchflow.cli.common import EXIT_OK, bad_flag, prefect_server, with_home
from fetchflow.errors import SettingsInvalid, StorageError

__all__ = ["main"]


def _seconds(flag: str, value: float, lowest: float, example: str) -> float:
    if not math.isfinite(value) or value < lowest:
        raise bad_flag(flag, f"expected at least {lowest:g} seconds, got {value:g}", example)
    return value


def main(args: argparse.Namespace) -> int:
    """Look once (or every ``--every`` seconds with ``--watch``) and act on the dead runs."""
    from fetchflow.run.preflight import StoreOpener
    from fetchflow.settings import load_settings

    every = _seconds("--every", args.every, 1, "give --every 10 (seconds between two looks)")
    pending = _seconds(
        "--pending-seconds", args.pending_seconds, 1, "give --pending-seconds 600 (10 minutes)"
    )
    if args.max_attempts < 1:
        raise bad_flag(
            "--max-attempts",
            f"expected 1 or more, got {args.max_attempts}",
            "give --max-attempts 3 (1: never reschedule, only mark Crashed)",
        )
    settings = with_home(load_settings())
    target = prefect_server(settings, "to look for crashed runs on")
    from fetchflow.orchestration.recovery import recover_once, watch  # Prefect, from here on
    from fetchflow.orchestration.server import check_prefect_api

    check_prefect_api(target.api_url)
    os.environ["PREFECT_API_URL"] = target.api_url
    from fetchflow.orchestration.prefect_env import prepare_prefect_environment

    prepare_prefect_environment(settings)
    opener = StoreOpener(settings)
    window = 6 * settings.heartbeat_seconds
    if not args.watch:
        try:
            done = recover_once(
                settings, opener, pending_seconds=pending, max_attempts=args.max_attempts
            )
        except StorageError as error:
            raise SettingsInvalid(
                f"cannot read the store {settings.store} (nothing was touched): {error.format()}"
            ) from None
        except Exception as error:
            from fetchflow.orchestration.server import api_refusal

            refusal = api_refusal(target.api_url, error)
            if refusal is None:
                raise
            raise refusal from None
        if not done:
            print(
                f"fetchflow recover: no dead run (a run is dead after {window:g} s without a "
                "heartbeat)",
                file=sys.stderr,
            )
        return EXIT_OK
    print(
        f"fetchflow recover: watching {target.api_url} and the store {settings.store} every "
        f"{every:g} s: a run without a heartbeat for {window:g} s is marked Crashed within "
        f"{window + every:g} s and rescheduled; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()

    def finish(signum: int, frame: object) -> None:
        stop.set()  # the pass under way ends first: a run is never left half-rescheduled

    previous = {
        number: signal.signal(number, finish)
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(number) is not signal.SIG_IGN
    }
    try:
        watch(
            settings,
            opener,
            every=every,
            pending_seconds=pending,
            max_attempts=args.max_attempts,
            stop=stop,
        )
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print("fetchflow recover: stopped", file=sys.stderr)
    return EXIT_OK
