"""`salvo extract` bad-input catalogue: each case is refused before Prefect starts, with one line on
stderr and exit 2, and the folder's earlier inputs and outputs stay byte-for-byte as they were."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.badinput import assert_refused


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    return port


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A folder after an earlier run: inputs, a plot folder, reports."""
    d = tmp_path / "data"
    (d / "a_results").mkdir(parents=True)
    (d / "a.nc").write_bytes(b"CDF\x01 earlier input a")
    (d / "b.nc").write_bytes(b"CDF\x01 earlier input b")
    (d / "a_results" / "tas_timeseries.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"old plot" * 10)
    (d / "batch_processing_summary.txt").write_text("earlier report\n")
    (d / "sub").mkdir()
    (d / "sub" / "c.nc").write_bytes(b"CDF\x01 earlier input c")
    (tmp_path / "afile").write_text("a file, not a folder\n")
    return d


# (argv after `extract --directory DATA`, a word the error line must contain); {tmp} and {port} are filled in.
CASES = [
    pytest.param(["--directory", "{tmp}/nope"], "directory does not exist", id="directory-missing"),
    pytest.param(["--directory", "{tmp}/afile"], "not a folder", id="directory-is-a-file"),
    pytest.param(
        ["--worker-command", "python3 'unbalanced {input}"], "cannot be parsed", id="command-unbalanced-quote"
    ),
    pytest.param(["--worker-command", "   "], "empty", id="command-only-spaces"),
    pytest.param(
        ["--worker-command", "no-such-program-4711 {input} {output_dir}"],
        "no-such-program-4711",
        id="command-program-missing",
    ),
    pytest.param(["--worker-command", "python3 x.py {input} {outdir}"], "{outdir}", id="command-unknown-placeholder"),
    pytest.param(["--output-dir", "{tmp}/afile"], "--output-dir", id="output-dir-is-a-file"),
    pytest.param(["--output-dir", "{tmp}/afile/below"], "--output-dir", id="output-dir-under-a-file"),
    pytest.param(["--dask-address", "not an address"], "--dask-address", id="dask-address-malformed"),
    pytest.param(["--dask-address", "tcp://127.0.0.1:{port}"], "--dask-address", id="dask-address-closed"),
    pytest.param(["--timeout", "nan"], "--timeout", id="timeout-nan"),
    pytest.param(["--timeout", "inf"], "--timeout", id="timeout-inf"),
    pytest.param(["--timeout", "1e308"], "--timeout", id="timeout-huge"),
    pytest.param(["--timeout", "-1"], "--timeout", id="timeout-negative"),
    pytest.param(["--timeout", "0"], "--timeout", id="timeout-zero"),
    pytest.param(["--retries", "-1"], "--retries", id="retries-negative"),
    pytest.param(["--items-per-task", "0"], "--items-per-task", id="items-per-task-zero"),
    pytest.param(["--items-per-task", "-1"], "--items-per-task", id="items-per-task-negative"),
    pytest.param(["--state", "{tmp}/afile"], "--state", id="state-is-a-file"),
    pytest.param(["--dpi", "0"], "--dpi", id="dpi-zero"),
    pytest.param(["--dpi", "many"], "--dpi", id="dpi-not-a-number"),
    pytest.param(
        ["--dpi", "150", "--worker-command", "python3 x.py {input} {output_dir}"], "--dpi", id="dpi-with-worker-command"
    ),
    pytest.param(["--max-workers", "0"], "0", id="max-workers-zero"),
]


@pytest.mark.parametrize("args, mentions", CASES)
def test_refused_up_front(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], mentions: str
) -> None:
    argv = [
        "extract",
        "--directory",
        str(data),
        *[a.replace("{tmp}", str(tmp_path)).replace("{port}", str(_closed_port())) for a in args],
    ]
    assert_refused(argv, capsys, keep=[tmp_path], mentions=mentions)
    assert not (data / ".salvo").exists()  # no records: nothing started


def test_two_inputs_sharing_one_output_folder(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "a.nc4").write_bytes(b"CDF\x01 a as nc4")
    err = assert_refused(
        ["extract", "--directory", str(data), "--pattern", "a.nc*"], capsys, keep=[tmp_path], mentions="same output"
    )
    assert "a.nc" in err and "a.nc4" in err


def test_output_of_a_file_would_replace_a_folder_of_inputs(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a.nc beside a folder a/ holding b.nc: mirrored under --output-dir, OUT/a would hold OUT/a/b.
    (data / "a").mkdir()
    (data / "a" / "b.nc").write_bytes(b"CDF\x01 b in a")
    out = tmp_path / "out"
    err = assert_refused(
        ["extract", "--directory", str(data), "--recursive", "--output-dir", str(out)],
        capsys,
        keep=[tmp_path],
        mentions="inside the output of a.nc",
    )
    assert str(out / "a") in err and not out.exists()


def test_output_dir_equal_to_the_input_folder_never_replaces_an_input_folder(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data / "a").mkdir()
    (data / "a" / "b.nc").write_bytes(b"CDF\x01 b in a")
    err = assert_refused(
        ["extract", "--directory", str(data), "--recursive", "--output-dir", str(data)], capsys, keep=[tmp_path]
    )
    assert str(data / "a") in err
    assert (data / "a" / "b.nc").read_bytes() == b"CDF\x01 b in a"


SEED_CASES = [
    pytest.param(["--seed-layout"], "extract_results.py is not there", False, id="seed-layout-without-its-script"),
    pytest.param(
        ["--seed-layout", "--output-dir", "{tmp}/out"],
        "--output-dir does not apply",
        True,
        id="seed-layout-with-output-dir",
    ),
    pytest.param(["--seed-layout", "--recursive"], "--recursive does not apply", True, id="seed-layout-with-recursive"),
    pytest.param(
        ["--seed-layout", "--worker-command", "python3 x.py {input} {output_dir}"],
        "--worker-command does not apply",
        True,
        id="seed-layout-with-worker-command",
    ),
    pytest.param(
        ["--seed-layout", "--worker-script", "../x.py"], "must be a file name", True, id="worker-script-a-path"
    ),
    pytest.param(
        ["--worker-script", "extract_results.py"], "--seed-layout only", True, id="worker-script-without-seed-layout"
    ),
]


@pytest.mark.parametrize("args, mentions, with_script", SEED_CASES)
def test_seed_layout_refused_up_front(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    mentions: str,
    with_script: bool,
) -> None:
    monkeypatch.chdir(tmp_path)  # the seed's working folder
    if with_script:
        (tmp_path / "extract_results.py").write_text("print('a seed-era worker')\n")
    argv = ["extract", "--directory", "data", *[a.replace("{tmp}", str(tmp_path)) for a in args]]
    assert_refused(argv, capsys, keep=[tmp_path], mentions=mentions)
    assert not (tmp_path / ".salvo").exists() and not (tmp_path / ".salvo-seed-staging").exists()


def test_a_file_name_with_a_line_break_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data / "x\ny.nc").write_bytes(b"CDF\x01 a name batch_resume.txt cannot list")
    assert_refused(["extract", "--directory", str(data)], capsys, keep=[tmp_path], mentions="line break")
