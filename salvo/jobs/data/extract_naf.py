"""One-off: write ``naf_rev2.csv`` from INSEE's NAF rév. 2 tables, as shipped inside the pynsee wheel.

Run once, by hand (see PROVENANCE.md), never at run time; Salvo reads only the CSV it wrote::

    pip download --no-deps -d /tmp/pyn pynsee==0.3.0
    unzip -o /tmp/pyn/pynsee-0.3.0-py3-none-any.whl 'pynsee/metadata/data/naf.zip' -d /tmp/pyn
    python salvo/jobs/data/extract_naf.py /tmp/pyn/pynsee/metadata/data/naf.zip salvo/jobs/data/naf_rev2.csv
"""

from __future__ import annotations

import csv
import io
import re
import sys
import zipfile
from collections import Counter

_LEVELS = (
    (r"\d{2}", "division"),
    (r"\d{2}\.\d", "group"),
    (r"\d{2}\.\d{2}", "class"),
    (r"\d{2}\.\d{2}[A-Z]", "subclass"),
)


def extract(src: str, dst: str) -> Counter[str]:
    """Codes, levels, sections and 65-character titles of ``int_courts_naf_rev_2.csv``, cross-checked against
    ``naf2008_5_niveaux.csv`` (both INSEE's, Latin-1, ``;``-separated), written as UTF-8 CSV."""
    with zipfile.ZipFile(src) as z:
        titles = z.read("naf2008/int_courts_naf_rev_2.csv").decode("latin-1")
        five = z.read("naf2008/naf2008_5_niveaux.csv").decode("latin-1")
    rows: list[tuple[str, str, str]] = []
    for r in list(csv.reader(io.StringIO(titles), delimiter=";"))[1:]:
        if len(r) < 4 or not r[1].strip():
            continue
        code, title = r[1].strip(), r[3].strip()
        section = re.fullmatch(r"SECTION ([A-U])", code)
        if section:
            rows.append((section[1], "section", title))
            continue
        level = next((name for pattern, name in _LEVELS if re.fullmatch(pattern, code)), None)
        if level is None:
            raise SystemExit(f"unexpected code {code!r}")
        rows.append((code, level, title))
    levels = [r for r in list(csv.reader(io.StringIO(five), delimiter=";"))[1:] if r]
    if {r[0] for r in levels} != {c for c, lv, _ in rows if lv == "subclass"}:
        raise SystemExit("INSEE's two tables disagree on the sub-classes")
    section_of = {r[3]: r[4] for r in levels}  # division -> section
    with open(dst, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["code", "level", "section", "title"])
        for code, level, title in rows:
            out.writerow([code, level, code if level == "section" else section_of[code[:2]], title])
    return Counter(level for _, level, _ in rows)


if __name__ == "__main__":
    print(extract(sys.argv[1], sys.argv[2]))
