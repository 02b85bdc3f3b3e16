"""`--cluster slurm` settings: SLURM's time spellings, the YAML file, the flags, and what dask-jobqueue is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.cluster import slurm_cluster_kwargs, slurm_options
from salvo.errors import UsageError
from salvo.options import RunOptions, SlurmOptions, walltime_seconds
from tests.helpers import salvo

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    "text, seconds",
    [("30", 1800), ("5:30", 330), ("01:00:00", 3600), ("2-0", 172800), ("1-12:30", 131400), ("1-00:00:10", 86410)],
)
def test_slurm_time_limits_as_sbatch_spells_them(text: str, seconds: float) -> None:
    assert walltime_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "1:2:3:4", "a-01:00", "0", "00:00:00"])
def test_a_time_limit_sbatch_would_refuse_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        walltime_seconds(text)


def test_an_item_never_outlives_its_job() -> None:
    run = RunOptions(timeout_s=24 * 3600, slurm=SlurmOptions(walltime="02:00:00"))
    assert run.timeout_s == 7200 - 60  # capped below the walltime: a timeout, not a job killed under the item
    assert RunOptions(timeout_s=600, slurm=SlurmOptions(walltime="02:00:00")).timeout_s == 600
    assert RunOptions(timeout_s=None, slurm=SlurmOptions(walltime="1")).timeout_s == 48
    assert RunOptions.of("subject-batch", {"slurm": {"walltime": "00:30:00"}}).timeout_s == 1800 - 60


def test_yaml_then_flags_then_what_dask_jobqueue_gets(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.yaml"
    conf.write_text(
        "slurm:\n  queue: t1standard\n  account: proj\n  cores: 4\n  walltime: '08:00:00'\n"
        "  job_extra: ['#SBATCH --qos=normal']\n"
    )
    opts = slurm_options(conf, cores=2, memory="8GB")
    assert (opts.partition, opts.account, opts.cores, opts.memory) == ("t1standard", "proj", 2, "8GB")
    assert opts.job_extra_directives == ("--qos=normal",)
    kw = slurm_cluster_kwargs(opts.model_copy(update={"log_directory": str(tmp_path / "logs")}))
    assert kw["queue"] == "t1standard" and kw["account"] == "proj" and kw["cores"] == 2 and kw["processes"] == 1
    assert kw["job_extra_directives"] == ["--qos=normal"] and kw["walltime"] == "08:00:00"
    assert (tmp_path / "logs").is_dir()


def test_bad_settings_are_one_line_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--slurm-walltime"):
        slurm_options(walltime="1h")
    with pytest.raises(UsageError, match="--slurm-cores"):
        slurm_options(cores=0)
    bad = tmp_path / "slurm.yaml"
    bad.write_text("[1, 2]\n")
    with pytest.raises(UsageError, match="mapping"):
        slurm_options(bad)
    bad.write_text("slurm:\n  partiton: debug\n")  # a misspelt key is not ignored
    with pytest.raises(UsageError, match="partiton"):
        slurm_options(bad)


def test_slurm_flags_without_the_cluster_and_a_split_recovery_are_exit_2(tmp_path: Path) -> None:
    import shutil

    from tests.helpers import PUBLIC_FIXTURES

    (tmp_path / "in").mkdir()
    shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "run-mask.nc", tmp_path / "m.nc")
    for args, words in (
        (["extract", "--directory", str(tmp_path / "in"), "--slurm-partition", "debug"], "need --cluster slurm"),
        (
            ["extract", "--directory", str(tmp_path / "in"), "--cluster", "slurm", "--slurm-walltime", "1h"],
            "--slurm-walltime",
        ),
        (
            [
                "recover",
                "--model-command",
                "true",
                "--mask",
                str(tmp_path / "m.nc"),
                "--output",
                str(tmp_path / "o"),
                "--cluster",
                "slurm",
            ],
            "give --cells-per-batch",
        ),
    ):
        proc = salvo(*args, env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_slurm_and_a_dask_address_together_are_refused() -> None:
    import argparse

    from cli.cluster import slurm_from_args

    with pytest.raises(UsageError, match="give one of them"):
        slurm_from_args(argparse.Namespace(cluster="slurm", dask_address="tcp://127.0.0.1:8786"))
