"""Reading a run report as a real browser sees it: headless Chromium's DOM, its links, its timeline bars."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is missing: `make test` installs it (Debian package chromium)"
    return exe


def dump_dom(page: Path) -> str:
    """The DOM headless Chromium built from ``page`` (after parsing, as a browser shows it)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "HOME": profile},
        )
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, png: Path, *, width: int = 1200, height: int = 1600) -> None:
    """A PNG of ``page`` as headless Chromium draws it."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "HOME": profile},
        )
    assert png.exists(), proc.stderr[-2000:]


def small_screenshot(page: Path, png: Path) -> None:
    """A screenshot for the docs: 1200 px wide drawn, saved at 900 px in 64 colours (tens of kB, not hundreds)."""
    from PIL import Image

    screenshot(page, png, width=1200, height=1500)
    img = Image.open(png).convert("RGB")
    img = img.resize((900, img.height * 900 // img.width), Image.LANCZOS)
    img.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)


class Dom(HTMLParser):
    """The links, element ids and timeline bars of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.bars: list[dict[str, str]] = []
        self.trace_rows = 0
        self._in_trace = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "rect" and "bar" in a.get("class", "").split():
            self.bars.append(a)
        if tag == "table":
            self._in_trace = a.get("id") == "trace"
        if tag == "tr" and self._in_trace:
            self.trace_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_trace = False

    def attempts_of(self, item: str) -> list[int]:
        return sorted(int(b["data-attempt"]) for b in self.bars if b.get("data-item") == item)


def check_report(page: Path, *, retried: str | None = None, ran: bool = True) -> Dom:
    """Every link of ``page`` (as Chromium reads it) leads to an existing file (or output folder); the header, the trace
    table and the timeline are there; ``retried`` has a bar per attempt (1 and 2)."""
    dom = Dom(dump_dom(page))
    assert {"run-header", "trace", "counts"} <= dom.ids, sorted(dom.ids)
    assert dom.trace_rows >= 2 and bool(dom.bars) == ran  # ran: some item ran in this run (a timeline bar)
    local = [h for h in dom.hrefs if not h.startswith(("#", "http://", "https://", "mailto:"))]
    assert local, "the report links no file"
    for href in local:
        target = (page.parent / urllib.parse.unquote(href.split("#")[0])).resolve()
        assert target.exists(), f"{page}: link {href!r} leads to nothing ({target})"  # a file, or an output folder
    if retried is not None:
        assert dom.attempts_of(retried) == [1, 2], (retried, dom.attempts_of(retried))
    return dom
