"""A dependency of the bundled test app, with a data file of its own."""

from __future__ import annotations

import json
from importlib import resources


def load_prices() -> dict[str, float]:
    return json.loads(resources.files(__name__).joinpath("prices.json").read_text("utf-8"))
