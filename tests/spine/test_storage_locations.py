"""Storage locations: one parser decides "path, URL or block name?", strictly (issue 22.4).

The table is pure (no disk, no server). The end-to-end cases run `salvo` in-process from a fresh
working folder: a refused spelling is exit 2 and one line, and nothing appears anywhere, in
particular not the relative folders the old parser wrote to (``./ata/x``, ``./ta/x``, ``./s3/...``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.errors import UsageError
from salvo.storage import ACCEPTED_FORMS, location_kind, open_storage, parse_location
from tests.badinput import assert_refused, snapshot

pytestmark = pytest.mark.pure


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty working folder and a known $HOME beside it (relative paths and ``~`` resolve there)."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "cwd"


# spelling -> (kind, local path with {cwd} filled in | (bucket, key) | block name)
ACCEPTED = {
    "/data/x": ("local", "/data/x"),
    "/data/x/": ("local", "/data/x"),
    "data/x": ("local", "{cwd}/data/x"),
    "./x": ("local", "{cwd}/x"),
    "../up": ("local", "{parent}/up"),
    "~/results": ("local", "{parent}/home/results"),
    "file:/data/x": ("local", "/data/x"),
    "file:///data/x": ("local", "/data/x"),
    "FILE:///data/x": ("local", "/data/x"),
    "file://localhost/data/x": ("local", "/data/x"),
    "file://LocalHost/data/x": ("local", "/data/x"),
    "file:///data/my%20dir/%C3%A9t%C3%A9": ("local", "/data/my dir/été"),
    "file:///data/~x": ("local", "/data/~x"),  # no ~ expansion inside a URL
    "  /data/x  ": ("local", "/data/x"),
    "s3://lab/salvo": ("s3", ("lab", "salvo")),
    "S3://lab/salvo": ("s3", ("lab", "salvo")),
    "s3://lab": ("s3", ("lab", "")),
    "s3://lab/a/b/": ("s3", ("lab", "a/b")),
    "s3a://lab/p": ("s3", ("lab", "p")),
    "lab-store": ("block", "lab-store"),
    "salvo_data.v2": ("block", "salvo_data.v2"),
}


@pytest.mark.parametrize("text", list(ACCEPTED))
def test_accepted_spellings_resolve_to_one_place(text: str, cwd: Path) -> None:
    kind, where = ACCEPTED[text]
    loc = parse_location(text)
    assert loc.kind == kind
    if kind == "local":
        assert loc.path == where.format(cwd=cwd, parent=cwd.parent) and loc.url == loc.path
    elif kind == "s3":
        assert (loc.bucket, loc.key) == where
        assert loc.url.lower() == f"{loc.scheme}://{where[0]}" + (f"/{where[1]}" if where[1] else "")
        assert loc.url.startswith(("s3://", "s3a://"))  # the scheme is normalised to lower case
    else:
        assert loc.name == where and loc.url == where


def test_location_kind_is_the_one_answer_path_url_or_block(cwd: Path) -> None:
    # What the records, storage blocks and --state ask: which kind, and the local folder.
    assert location_kind("data/x") == ("local", str(cwd / "data/x"))
    assert location_kind("file:///data/my%20dir") == ("local", "/data/my dir")
    assert location_kind(Path("s3:x")) == ("local", str(cwd / "s3:x"))
    assert location_kind("S3://lab/salvo/") == ("s3", "s3://lab/salvo")
    assert location_kind("lab-store") == ("block", "lab-store")
    with pytest.raises(UsageError, match="--state"):
        location_kind("s3//lab/x", "--state")


def test_a_bare_name_is_a_folder_where_no_block_can_be_meant(cwd: Path) -> None:
    assert parse_location("lab-store", block_names=False).path == str(cwd / "lab-store")
    # A Path is always a local path, even when its text would read as a URL.
    assert parse_location(Path("s3:x")).path == str(cwd / "s3:x")


# spelling -> what the one line must say (besides naming the accepted forms)
REFUSED = {
    "file:data/x": "a file: URL holds an absolute path",
    "file:./data": "a file: URL holds an absolute path",
    "file://data/x": "file://data/... names the host 'data'",
    "file://host/x": "names the host 'host'",
    "file:": "a file: URL holds an absolute path",
    "file://": "a file: URL holds an absolute path",
    "file://localhost": "a file: URL holds an absolute path",
    "file:////server/share": "a file: URL holds an absolute path",
    "file:///data/a?b": "no '?' or '#'",
    "file:///data/a#b": "no '?' or '#'",
    "s3//lab/salvo": "looks like a s3:// URL with its ':' or '//' misspelled",
    "S3//lab": "looks like a s3:// URL",
    "file//data/x": "looks like a file:// URL",
    "s3:/lab/salvo": "an S3 URL is s3://bucket/prefix, with '//'",
    "s3:lab": "an S3 URL is s3://bucket/prefix",
    "s3:///lab": "it names no bucket",
    "s3://": "it names no bucket",
    "s3://minio:9000/lab": "an S3 URL holds no endpoint or port",
    "s3://lab bucket/x": "is not a bucket name",
    "gs://lab/x": "unsupported storage URL scheme gs://",
    "https://example.org/x": "unsupported storage URL scheme https://",
    "lab:store": "lab: is not a location scheme (for a local folder named so, write ./lab:store)",
    "   ": "is empty",
}


@pytest.mark.parametrize("text", list(REFUSED))
def test_refused_spellings_name_the_accepted_forms(text: str, cwd: Path) -> None:
    with pytest.raises(UsageError) as info:
        parse_location(text, "--storage")
    msg = str(info.value)
    assert REFUSED[text] in msg and len(msg.splitlines()) == 1
    assert ACCEPTED_FORMS in msg or "is empty" in msg
    assert msg.startswith("bad --storage ") or msg.startswith("--storage is empty")
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize(
    "text", ["s3://AKIAX:very-secret@lab/x", "s3:AKIAX:very-secret@lab", "s3//AKIAX:very-secret@lab"]
)
def test_credentials_in_a_location_are_refused_and_never_echoed(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_location(text, "--storage")
    assert "very-secret" not in str(info.value) and "AKIAX" not in str(info.value)


def test_open_storage_writes_where_the_file_url_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old parser cut the first 7 characters: ``file:/data/x`` wrote to ``./ata/x``."""
    work, dest = tmp_path / "work", tmp_path / "dest dir"
    work.mkdir()
    monkeypatch.chdir(work)
    for i, url in enumerate(
        [f"file:{dest}", f"file://{dest}", f"file://localhost{dest}", "file://" + str(dest).replace(" ", "%20")]
    ):
        target = open_storage(url)
        target.write_bytes(f"f{i}", b"x")
        assert (dest / f"f{i}").read_bytes() == b"x", url
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("text", ["file:data/x", "file://data/x", "s3//lab/salvo", "s3:lab", "gs://lab/x"])
def test_open_storage_refuses_before_writing(text: str, cwd: Path) -> None:
    with pytest.raises(UsageError, match="accepted: "):
        open_storage(text)
    assert list(cwd.iterdir()) == []


@pytest.fixture
def world(cwd: Path) -> Path:
    """Inputs a command could wrongly touch: NetCDF-named files and an earlier output."""
    (cwd / "in").mkdir()
    (cwd / "in" / "a.nc").write_bytes(b"CDF\x01not really")
    (cwd / "out" / "a_results").mkdir(parents=True)
    (cwd / "out" / "a_results" / "plot.png").write_bytes(b"\x89PNG keep")
    return cwd


# command line -> the flag whose location is refused; {bad} is the spelling under test
COMMANDS = {
    "extract --state": ["extract", "--directory", "in", "--output-dir", "out", "--state", "{bad}"],
    "assembly run --storage": [
        "assembly",
        "run",
        "tests.assembly.helpers:tiny_generator",
        "--samples",
        "2",
        "--storage",
        "{bad}",
    ],
    "assembly reassemble --output": ["assembly", "reassemble", "r", "--storage", "./store", "--output", "{bad}"],
    "extract --output-dir": ["extract", "--directory", "in", "--output-dir", "{bad}"],
    "blocks create local": ["blocks", "create", "local", "lab", "{bad}"],
    "blocks create s3": ["blocks", "create", "s3", "lab", "{bad}"],
}
BAD = ["file:data/x", "file://data/x", "s3//lab/salvo", "s3:/lab/salvo", "S3:lab", "gs://lab/salvo"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_location_flag_refuses_a_bad_spelling_before_anything_runs(
    command: str, bad: str, world: Path, capsys
) -> None:
    argv = [bad if a == "{bad}" else a for a in COMMANDS[command]]
    if command == "assembly reassemble --output" and "." not in bad.rsplit("/", 1)[-1]:
        argv[-1] = bad + ".parquet"
    before = snapshot([world])
    err = assert_refused(argv, capsys, keep=[world])
    assert "accepted: " in err or "must look like s3://bucket/prefix" in err, err
    assert snapshot([world]) == before
    for wrong in ("ata", "ta", "data", "s3", "S3", "lab", "gs:", "file:data"):
        assert not (world / wrong).exists(), f"{argv} created ./{wrong}"
