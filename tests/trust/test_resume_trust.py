"""A record is trusted only while its outputs still check (issue 22, item 2): real `salvo extract` runs.

The record keeps a digest of what the item published; a resumed run re-checks it and runs the item
again, saying why, when an output vanished or changed; a file only touched (same bytes) is still trusted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from salvo.outcome import ItemResult, Status
from salvo.spine.records import read_record, record_store, write_record
from tests.helpers import salvo
from tests.trust.test_publish import co2_extract


def _runs(mode: Path) -> int:
    runs = Path(f"{mode}.runs")
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_a_deleted_or_changed_output_runs_again_on_resume_with_the_reason(tmp_path: Path, child_env: dict) -> None:
    data, mode, args = co2_extract(tmp_path)
    assert salvo(*args, env=child_env).returncode == 0
    plot = data / "co2_results" / "plot.png"
    assert _runs(mode) == 1

    cached = salvo(*args, env=child_env)  # nothing changed: the record is trusted
    assert cached.returncode == 0 and json.loads(cached.stdout)["items"][0]["cached"] is True
    assert _runs(mode) == 1

    plot.unlink()  # the plot deleted by hand: the item runs again, and says why
    gone = salvo(*args, env=child_env)
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert _runs(mode) == 2 and plot.is_file()
    assert "re-run: output plot.png vanished since it was recorded" in gone.stdout + gone.stderr
    assert json.loads(gone.stdout)["items"][0]["cached"] is False

    original = plot.read_bytes()
    plot.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size, other bytes, new mtime
    changed = salvo(*args, env=child_env)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert _runs(mode) == 3
    assert "re-run: output plot.png changed since it was recorded" in changed.stdout + changed.stderr

    st = plot.stat()
    os.utime(plot, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: same bytes, new mtime
    touched = salvo(*args, env=child_env)
    assert touched.returncode == 0 and json.loads(touched.stdout)["items"][0]["cached"] is True
    assert _runs(mode) == 3, "a touched but unchanged output made the item run again"


@pytest.mark.pure
def test_a_record_of_an_older_version_without_digest_is_trusted_while_its_outputs_exist(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "plot.png").write_bytes(b"\x89PNG old")
    store = record_store(str(tmp_path / "state"))
    old = ItemResult("a.nc", Status.SUCCESS, outputs=[str(out)]).to_dict()
    assert "digest" not in old  # as older versions wrote it
    store.put("k" * 40, old)
    assert read_record(store, "k" * 40) is not None
    (out / "plot.png").write_bytes(b"other bytes")  # no digest: only existence is checked, as before
    assert read_record(store, "k" * 40) is not None
    shutil.rmtree(out)
    assert read_record(store, "k" * 40) is None


@pytest.mark.pure
def test_write_record_keeps_a_digest_that_read_record_checks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "plot.png").write_bytes(b"\x89PNG one")
    (out / "sub" / "table.csv").write_bytes(b"a,b\n1,2\n")
    store = record_store(str(tmp_path / "state"))
    assert write_record(store, "d" * 40, ItemResult("b.nc", Status.SUCCESS, outputs=[str(out)]))
    record = store.get("d" * 40, fresh=True)
    names = [row[0] for row in record["digest"]["files"][str(out)]]
    assert names == ["plot.png", "sub/table.csv"]
    assert read_record(store, "d" * 40) is not None
    (out / "sub" / "table.csv").write_bytes(b"a,b\n1,3\n")
    assert read_record(store, "d" * 40) is None
