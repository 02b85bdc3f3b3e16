"""Issue 10: every run without --seed draws a fresh seed, recorded in the ledger and the report;
--seed fixes it; a resumed assembly keeps its own; re-assembly tells assemblies apart by seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli.main import main as salvo_main
from flows.assembly import assembly_reassemble, assembly_run
from salvo.assembly.ledger import read_ledger
from salvo.assembly.run import plan_assembly
from salvo.errors import UsageError
from salvo.options import RunOptions
from salvo.storage import open_storage

GEN = "tests.assembly.helpers:seeded_generator"
FOLDER = "01_v1_batch-seeded-generator"
RESULT = "seeded_generator_results"


@pytest.mark.pure
def test_plans_without_a_seed_draw_fresh_ones_and_a_given_seed_is_kept(tmp_path):
    drawn = [plan_assembly(GEN, overrides={"n_samples": 3}) for _ in range(5)]
    assert all(p.seed_drawn for p in drawn)
    assert len({p.seed for p in drawn}) == 5 and all(0 <= p.seed < 2**32 for p in drawn)
    assert len({p.config_hash for p in drawn}) == 5  # different data, different resume keys
    fixed = plan_assembly(GEN, overrides={"n_samples": 3, "seed": 7})
    assert (fixed.seed, fixed.seed_drawn) == (7, False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 11\n")
    from_file = plan_assembly(GEN, config_file=str(cfg))
    assert (from_file.seed, from_file.seed_drawn) == (11, False)
    with pytest.raises(UsageError, match="seed must be >= 0"):
        plan_assembly(GEN, overrides={"seed": -1})


def _run(store, **params):
    return assembly_run(experiment=GEN, storage=str(store), samples=3, run=RunOptions(retries=0), **params)


def test_nightly_runs_add_new_samples_and_record_their_seeds(tmp_path, capsys):
    store = tmp_path / "store"
    docs = [_run(store), _run(store), _run(store, seed=1234)]
    exp = open_storage(str(store)).child(FOLDER)
    rows = read_ledger(exp)
    seeds = [r.seed for r in rows]
    assert None not in seeds and len(set(seeds)) == 3 and seeds[2] == 1234
    assert [d["assembly"]["seed"] for d in docs] == seeds  # the run's summary says it too
    csv_text = exp.read_bytes("assembly_list.csv").decode()
    assert "seed" in csv_text.splitlines()[0] and "1234" in csv_text
    for row in rows:  # the assembly's own report says which seed it used
        plan = json.loads(exp.read_bytes(f"reports/{row.assembly_id}/assembly.json"))
        assert plan["config"]["seed"] == row.seed
    # Re-assembly: three different samples per sample index, not three copies of one.
    doc = assembly_reassemble(RESULT, storage=str(store), output=str(tmp_path / "all.parquet"))
    data = pq.read_table(tmp_path / "all.parquet").to_pandas()
    assert len(data) == 9 and data.groupby("sample")["draw"].nunique().tolist() == [3, 3, 3]
    assert doc["seeds"] == {r.assembly_id: r.seed for r in rows} and doc["repeated_seeds"] == {}
    # A seed filter keeps only that assembly; the listing shows every seed.
    one = assembly_reassemble(RESULT, storage=str(store), output=str(tmp_path / "one.parquet"), seeds=[1234])
    assert one["included"] == [rows[2].assembly_id]
    assert set(pd.read_parquet(tmp_path / "one.parquet")["assembly_id"]) == {rows[2].assembly_id}
    capsys.readouterr()
    assert salvo_main(["assembly", "list", "--storage", str(store)]) == 0
    listing = capsys.readouterr().out
    assert "seed" in listing.splitlines()[0] and all(str(s) in listing for s in seeds)


def test_same_seed_twice_is_reported_as_repeated_samples(tmp_path):
    store = tmp_path / "store"
    ids = [_run(store, seed=5)["assembly"]["assembly_id"] for _ in range(2)]
    doc = assembly_reassemble(RESULT, storage=str(store), output=str(tmp_path / "all.parquet"))
    assert doc["repeated_seeds"] == {"5": ids}


def test_resumed_assembly_reuses_its_recorded_seed(tmp_path):
    store, flag = tmp_path / "store", tmp_path / "fail-now"
    flag.touch()
    cfg = {"fail_flag": str(flag), "fail_sample": 2}
    state = _run(store, config=cfg, chunk_size=1, return_state=True)
    assert state.is_failed()
    exp = open_storage(str(store)).child(FOLDER)
    [failed] = read_ledger(exp)
    assert failed.status == "failed" and failed.seed is not None
    flag.unlink()
    with pytest.raises(UsageError, match=f"started with seed {failed.seed}"):
        _run(store, config=cfg, chunk_size=1, seed=(failed.seed + 1) % 2**32, assembly_id=failed.assembly_id)
    doc = _run(store, config=cfg, chunk_size=1, assembly_id=failed.assembly_id)
    assert doc["assembly"]["seed"] == failed.seed and doc["summary"]["resumed"] == 2
    [done] = read_ledger(exp)
    assert (done.assembly_id, done.status, done.seed) == (failed.assembly_id, "completed", failed.seed)
    with exp.open_read(done.result_file) as fh:
        data = pq.read_table(fh).to_pandas()
    expected = pd.DataFrame(
        [{"sample": s, "draw": float(np.random.default_rng([failed.seed, s]).random())} for s in range(3)]
    )
    pd.testing.assert_frame_equal(data[["sample", "draw"]], expected)
