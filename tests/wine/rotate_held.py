"""Runs under Windows python (Wine): RotatingWriter with its file held open by another
handle, as a log viewer holds it (Python's open() shares read and write, not delete, like
`Get-Content -Wait`). Prints what happened as one JSON line.

    rotate_held.py FOLDER
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from graceful.windows.service_log import ROTATE_RETRY_S, RotatingWriter

folder = Path(sys.argv[1])
path = folder / "x.log"
now = [0.0]
writer = RotatingWriter(path, max_bytes=300, backups=10, clock=lambda: now[0])
report: dict[str, object] = {}
viewer = open(path, encoding="utf-8")  # noqa: SIM115
for n in range(20):
    writer.write(json.dumps({"event": "line", "n": n, "pad": "x" * 40}) + "\n")
report["held"] = sorted(os.listdir(folder))
report["rotate_failures"] = writer.rotate_failures
report["error"] = writer.error
report["viewer_reads"] = len(viewer.read().splitlines())
viewer.close()
now[0] += ROTATE_RETRY_S
for n in range(20, 40):
    writer.write(json.dumps({"event": "line", "n": n, "pad": "x" * 40}) + "\n")
report["released"] = sorted(os.listdir(folder))
report["dropped"] = writer.dropped
numbers = []
for name in os.listdir(folder):
    for line in (folder / name).read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if "n" in event:
            numbers.append(event["n"])
report["numbers"] = sorted(numbers)
print(json.dumps(report))
