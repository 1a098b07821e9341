"""A module that takes a second to import: a SIGTERM then arrives before the loop exists."""

import sys
import time

print("slow_import: importing", file=sys.stderr, flush=True)
time.sleep(1.0)

from tests.apps import basic  # noqa: E402

__all__ = ["basic"]
