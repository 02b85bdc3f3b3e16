"""Helpers for the assembly tests, also run as child processes: ``python -m tests.assembly.helpers``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from salvo.assembly.ledger import claim_assembly_id, publish_ledger, record_event
from salvo.storage import open_storage


def wait_for(path: str | Path, *, timeout: float = 60.0) -> None:
    """Poll until ``path`` exists (a start signal shared by racing processes)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def claim_and_complete(url: str, endpoint: str | None, go: str) -> dict[str, Any]:
    """Wait for the start signal, claim an ID, record started and completed, publish the CSV."""
    exp = open_storage(url, endpoint_url=endpoint or None)
    exp.list("")  # connect (and import everything) before the race starts
    Path(f"{go}.ready.{os.getpid()}").touch()
    wait_for(go)
    aid = str(claim_assembly_id(exp, experiment="race"))
    record_event(exp, aid, "started", result_name="race")
    record_event(exp, aid, "completed", result_name="race", n_rows=1)
    publish_ledger(exp)
    return {"assembly_id": aid, "pid": os.getpid()}


def tiny_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """A user generator: a deterministic row per sample and repetition."""
    rows = [
        {"sample": s, "rep": r, "value": float(s * 10 + r + config.get("offset", 0))}
        for s in samples
        for r in range(int(config.get("n_reps", 1)))
    ]
    return pd.DataFrame(rows)


def gated_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Like ``tiny_generator``, but first waits until the file ``config['gate']`` exists."""
    wait_for(config["gate"], timeout=120)
    return tiny_generator(config, samples)


def counting_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Like ``tiny_generator``, and appends each call's first sample to ``config['calls']``;
    the chunk holding ``config['fail_sample']`` fails while ``config['fail_flag']`` exists."""
    with open(config["calls"], "a") as fh:
        fh.write(f"{samples[0]}\n")
    if config.get("fail_flag") and config["fail_sample"] in samples and Path(config["fail_flag"]).exists():
        raise RuntimeError(f"sample {config['fail_sample']} failed on purpose")
    return tiny_generator(config, samples)


def gated_from_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Appends each call's first sample to ``config['calls']``; samples from ``config['gate_from']``
    on first wait until the file ``config['gate']`` exists."""
    with open(config["calls"], "a") as fh:
        fh.write(f"{samples[0]}\n")
    if max(samples) >= int(config["gate_from"]):
        wait_for(config["gate"], timeout=120)
    return tiny_generator(config, samples)


def seeded_generator(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """A random draw per sample from ``config['seed']``; fails on ``config['fail_sample']`` while
    the file ``config['fail_flag']`` exists."""
    import numpy as np

    if config.get("fail_flag") and config["fail_sample"] in samples and Path(config["fail_flag"]).exists():
        raise RuntimeError(f"sample {config['fail_sample']} failed on purpose")
    return pd.DataFrame(
        [{"sample": s, "draw": float(np.random.default_rng([int(config["seed"]), s]).random())} for s in samples]
    )


def not_a_frame(config: dict[str, Any], samples: list[int]) -> list[int]:
    """A broken user generator: returns a list, not a DataFrame."""
    return list(samples)


if __name__ == "__main__":
    if sys.argv[1] == "claim":
        print(json.dumps(claim_and_complete(sys.argv[2], sys.argv[3], sys.argv[4])))
