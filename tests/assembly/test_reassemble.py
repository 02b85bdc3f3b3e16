"""Re-assembly on a local folder and on S3: completed only, once each, schemas checked, no pickles."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salvo.assembly.ids import data_file_name
from salvo.assembly.ledger import LEDGER_CSV, claim_assembly_id, record_event
from salvo.assembly.reassemble import (
    MissingData,
    PickleRefused,
    SchemaMismatch,
    reassemble_frame,
    reassemble_to_parquet,
)
from salvo.errors import UsageError
from salvo.storage import open_storage

RESULT = "toy_results"


@pytest.fixture
def exp(storage_location):
    base = open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)
    return base.child("01_v1_batch-toy")


def frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample": range(offset, offset + n),
            "value": [float(i) for i in range(n)],
            "label": [f"s{i}" for i in range(n)],
        }
    )


def add_assembly(exp, data: pd.DataFrame | None, *, status: str = "completed") -> str:
    """One assembly: started, then its data file, then completed (or left started / failed)."""
    aid = str(claim_assembly_id(exp))
    record_event(exp, aid, "started", result_name=RESULT)
    if status == "completed":
        with exp.open_write(data_file_name(RESULT, aid)) as fh:
            pq.write_table(pa.Table.from_pandas(data, preserve_index=False), fh)
        record_event(
            exp, aid, "completed", result_name=RESULT, n_rows=len(data), result_file=data_file_name(RESULT, aid)
        )
    elif status == "failed":
        record_event(exp, aid, "failed", result_name=RESULT, message="chunk 3 failed")
    return aid


def expected(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    return pd.concat([d.assign(assembly_id=a) for a, d in parts], ignore_index=True)


class TestReassembly:
    def test_streams_completed_assemblies_into_one_file(self, exp):
        parts = [(add_assembly(exp, frame(5, 0)), frame(5, 0)), (add_assembly(exp, frame(3, 100)), frame(3, 100))]
        report = reassemble_to_parquet(exp, RESULT, out=exp, out_rel="all.parquet")
        with exp.open_read("all.parquet") as fh:
            got = pq.read_table(fh).to_pandas()
        pd.testing.assert_frame_equal(got, expected(parts))
        assert report.included == [a for a, _ in parts] and report.rows == 8
        assert report.output == exp.uri("all.parquet")

    def test_started_and_failed_are_reported_and_left_out(self, exp):
        done = add_assembly(exp, frame(4))
        running = add_assembly(exp, None, status="started")
        failed = add_assembly(exp, None, status="failed")
        got, report = reassemble_frame(exp, RESULT)
        pd.testing.assert_frame_equal(got, expected([(done, frame(4))]))
        assert set(report.excluded) == {running, failed}
        assert report.excluded[failed] == "failed: chunk 3 failed"
        assert report.excluded[running].startswith("started")

    def test_no_assembly_is_counted_twice(self, exp):
        aid = add_assembly(exp, frame(2))
        record_event(exp, aid, "completed", result_name=RESULT, n_rows=2)  # a duplicate event
        got, report = reassemble_frame(exp, RESULT)
        assert report.included == [aid]
        assert len(got) == 2

    def test_schema_mismatch_names_the_assembly(self, exp):
        add_assembly(exp, frame(2))
        odd = add_assembly(exp, frame(2).assign(value=lambda d: d["value"].astype("int64")))
        with pytest.raises(SchemaMismatch, match=f"assembly {odd}.*'value' is int64 instead of double"):
            reassemble_to_parquet(exp, RESULT, out=exp, out_rel="all.parquet")
        assert not exp.exists("all.parquet")  # nothing half-written

    def test_missing_column_is_named(self, exp):
        add_assembly(exp, frame(2))
        odd = add_assembly(exp, frame(2).drop(columns=["label"]))
        with pytest.raises(SchemaMismatch, match=f"assembly {odd}.*missing column.*label"):
            reassemble_frame(exp, RESULT)

    def test_pickles_refused_unless_allowed(self, exp):
        exp.write_bytes(
            LEDGER_CSV, b"assembly_id,timestamp,status\n20240101_120000_run001,2024-01-01 12:00:00,completed\n"
        )
        old = frame(3)
        exp.write_bytes(f"{RESULT}_20240101_120000_run001.pkl", _pickle(old))
        new = add_assembly(exp, frame(3, 10))
        assert new.endswith("_run002")  # run numbers continue after the seed-era ledger's
        with pytest.raises(PickleRefused, match="allow-pickle"):
            reassemble_frame(exp, RESULT)
        got, report = reassemble_frame(exp, RESULT, allow_pickle=True)
        assert report.included == ["20240101_120000_run001", new]
        pd.testing.assert_frame_equal(got, expected([("20240101_120000_run001", old), (new, frame(3, 10))]))

    def test_completed_without_its_file_is_an_error(self, exp):
        aid = add_assembly(exp, frame(2))
        exp.remove(data_file_name(RESULT, aid))
        with pytest.raises(MissingData, match=aid):
            reassemble_frame(exp, RESULT)

    def test_other_results_in_the_ledger_are_ignored(self, exp):
        mine = add_assembly(exp, frame(2))
        other = str(claim_assembly_id(exp))
        record_event(exp, other, "started", result_name="other_results")
        got, report = reassemble_frame(exp, RESULT)
        assert report.included == [mine] and report.excluded == {}


def _pickle(df: pd.DataFrame) -> bytes:
    import pickle

    return pickle.dumps(df)


class TestLocating:
    def test_experiments_are_found_by_their_data(self, storage_location):
        from salvo.assembly.discover import find_experiments, locate_experiment

        root = open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)
        add_assembly(root.child("01_v1_batch-toy"), frame(1))
        add_assembly(root.child("02_v1_batch-other"), None, status="started")
        root.write_bytes("not_an_experiment/file.txt", b"x")
        assert find_experiments(root) == ["01_v1_batch-toy", "02_v1_batch-other"]
        assert locate_experiment(root, result_name=RESULT) == "01_v1_batch-toy"
        with pytest.raises(UsageError, match="no experiment"):
            locate_experiment(root, result_name="absent_results")

    def test_output_on_the_same_bucket_keeps_the_storage_credentials(self, storage_location):
        from salvo.assembly.discover import output_location

        exp = open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)
        out, name = output_location(None, exp=exp, result_name=RESULT)
        assert (out, name) == (exp, f"{RESULT}_reassembled.parquet")
        if storage_location.kind == "s3":
            bucket = exp.root.split("/")[0]
            out, name = output_location(f"s3://{bucket}/elsewhere/all.parquet", exp=exp, result_name=RESULT)
            assert (out.fs, out.root, name) == (exp.fs, f"{bucket}/elsewhere", "all.parquet")
        with pytest.raises(UsageError, match="must end with .parquet"):
            output_location("x.csv", exp=exp, result_name=RESULT)
