"""Small workers of the fault tests: every invocation leaves a marker file, then sleeps a little."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd


def slow_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """An assembly generator: marks ``config['calls']/<first sample>.<pid>``, sleeps ``$FAULT_SLEEP_S``."""
    calls = Path(config["calls"])
    calls.mkdir(parents=True, exist_ok=True)
    (calls / f"{samples[0]}.{os.getpid()}").touch()
    time.sleep(float(os.environ.get("FAULT_SLEEP_S", "0")))
    return pd.DataFrame([{"sample": s, "value": float(s)} for s in samples])
