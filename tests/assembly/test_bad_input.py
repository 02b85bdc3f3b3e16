"""Bad input to `salvo assembly ...` and `salvo blocks ...`: one line, exit 2, nothing touched.

Every case is refused before any flow starts: the storage folder is compared byte for byte.
"""

from __future__ import annotations

import os
import pickle

import pandas as pd
import pytest

from salvo.assembly.ledger import claim_assembly_id, publish_ledger, record_event
from salvo.storage import open_storage
from tests.badinput import assert_refused

GEN = "tests.assembly.helpers:tiny_generator"
FOLDER = "01_v1_batch-tiny-generator"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def world(tmp_path):
    """A storage with one completed and one failed assembly, a folder, a FIFO, a file, a pickle."""
    store = tmp_path / "store"
    exp = open_storage(str(store)).child(FOLDER)
    ids = {}
    for status in ("completed", "failed"):
        aid = str(claim_assembly_id(exp, experiment=GEN))
        record_event(exp, aid, "started", result_name="tiny_generator_results", experiment=GEN)
        record_event(exp, aid, status, result_name="tiny_generator_results", experiment=GEN)
        ids[status] = aid
    publish_ledger(exp)
    old = open_storage(str(store)).child("01_v1_batch-old")
    old.write_bytes("assembly_list.csv", b"assembly_id,timestamp,status\n20240101_120000_run001,2024-01-01,completed\n")
    old.write_bytes("old_results_20240101_120000_run001.pkl", pickle.dumps(pd.DataFrame({"x": [1]})))
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file.txt").write_text("x")
    return {"store": str(store), "tmp": str(tmp_path), **ids}


def run(w, *extra):
    return ["assembly", "run", GEN, "--storage", w["store"], *extra]


CASES = {
    "unknown storage block": (lambda w: ["assembly", "run", GEN, "--storage", "no-such-block-xyz"], "no storage block"),
    "storage block name with ..": (lambda w: ["assembly", "list", "--storage", "a..b"], "'..'"),
    "create block named with a slash": (lambda w: ["blocks", "create", "local", "a/b", w["tmp"] + "/x"], "block name"),
    "create block named ..": (lambda w: ["blocks", "create", "local", "..", w["tmp"] + "/x"], "block name"),
    "show block named with ..": (lambda w: ["blocks", "show", "../etc"], "block name"),
    "resume an unknown id": (lambda w: run(w, "--resume", "20200101_000000_run042"), "not in the ledger"),
    "resume a completed id": (lambda w: run(w, "--resume", w["completed"]), "already completed"),
    "resume a malformed id": (lambda w: run(w, "--resume", "yesterday"), "bad assembly id"),
    "config is a folder": (lambda w: run(w, "--config", w["tmp"] + "/folder"), "is a folder"),
    "config is a FIFO": (lambda w: run(w, "--config", w["tmp"] + "/fifo"), "not a regular file"),
    "config is missing": (lambda w: run(w, "--config", w["tmp"] + "/missing.yaml"), "does not exist"),
    "10**12 samples": (lambda w: run(w, "--samples", str(10**12)), "bound"),
    "too many chunks": (lambda w: run(w, "--samples", "5000000", "--chunk-size", "1"), "--chunk-size"),
    "negative samples": (lambda w: run(w, "--samples", "-5"), None),
    "nan reps": (lambda w: run(w, "--reps", "nan"), None),
    "negative seed": (lambda w: run(w, "--seed", "-1"), "seed"),
    "seed above 32 bits": (lambda w: run(w, "--seed", str(2**32)), "seed"),
    "nan timeout": (lambda w: run(w, "--timeout", "nan"), "timeout"),
    "negative retries": (lambda w: run(w, "--retries", "-1"), "retries"),
    "zero chunk size": (lambda w: run(w, "--chunk-size", "0"), None),
    "storage path is a file": (lambda w: ["assembly", "run", GEN, "--storage", w["tmp"] + "/file.txt"], "is a file"),
    "storage path under a file": (
        lambda w: ["assembly", "list", "--storage", w["tmp"] + "/file.txt/x"],
        "under a file",
    ),
    "unknown experiment": (
        lambda w: ["assembly", "run", "no-such-thing", "--storage", w["store"]],
        "unknown experiment",
    ),
    "generator that does not import": (
        lambda w: ["assembly", "run", "nope.mod:fn", "--storage", w["store"]],
        "cannot import",
    ),
    "result name with a slash": (lambda w: run(w, "--result-name", "../x"), "result name"),
    "refused pickle": (lambda w: ["assembly", "reassemble", "old_results", "--storage", w["store"]], "--allow-pickle"),
    "output not parquet": (
        lambda w: [
            "assembly",
            "reassemble",
            "tiny_generator_results",
            "--storage",
            w["store"],
            "--output",
            w["tmp"] + "/o.csv",
        ],
        ".parquet",
    ),
    "output is a folder": (
        lambda w: [
            "assembly",
            "reassemble",
            "tiny_generator_results",
            "--storage",
            w["store"],
            "--output",
            w["tmp"] + "/folder.parquet",
        ],
        None,
    ),
    "secret in --storage": (
        lambda w: ["assembly", "run", GEN, "--storage", f"s3://AKIAX:{SECRET}@bucket/p"],
        "embeds credentials",
    ),
    "secret in blocks create s3": (
        lambda w: ["blocks", "create", "s3", "lab", f"s3://AKIAX:{SECRET}@bucket/p"],
        "embeds credentials",
    ),
    "secret in --output": (
        lambda w: [
            "assembly",
            "reassemble",
            "r",
            "--storage",
            w["store"],
            "--output",
            f"s3://AKIAX:{SECRET}@b/o.parquet",
        ],
        "embeds credentials",
    ),
    "bad status id": (lambda w: ["assembly", "status", "bad-id", "--storage", w["store"]], "bad assembly id"),
    "s3 block with a non-s3 url": (lambda w: ["blocks", "create", "s3", "lab", "gs://bucket/p"], "s3://"),
    "bad endpoint url": (
        lambda w: ["blocks", "create", "s3", "lab", "s3://bucket/p", "--endpoint-url", "minio:9000"],
        "--endpoint-url",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(case, world, capsys):
    make, mentions = CASES[case]
    if case == "output is a folder":
        os.mkdir(world["tmp"] + "/folder.parquet")
    err = assert_refused(make(world), capsys, keep=[world["store"], world["tmp"]], mentions=mentions)
    assert SECRET not in err
