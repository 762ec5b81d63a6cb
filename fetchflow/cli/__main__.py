"""``python -m fetchflow.cli``: the command line."""

from __future__ import annotations

import sys

from fetchflow.cli import main

sys.exit(main())
