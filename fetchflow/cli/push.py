"""``fetchflow push``: upload the files kept in the spool after failed uploads."""

from __future__ import annotations

import argparse

from fetchflow.cli.common import EXIT_OK, with_home

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Upload every spooled file to the store; print each."""
    from fetchflow.run.preflight import check_store
    from fetchflow.settings import load_settings
    from fetchflow.storage import open_store, push_spooled

    settings = with_home(load_settings())
    store = check_store(lambda: open_store(settings))
    records = push_spooled(store, settings.spool_dir)
    for record in records:
        print(f"{record.file_name}  {record.storage_uri}")
    print(f"pushed {len(records)} file(s) from {settings.spool_dir} to {store.describe()}")
    return EXIT_OK
