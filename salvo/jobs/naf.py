"""NAF rév. 2 activity codes: parse, normalise, check against the nomenclature, match SIRENE's values.

The nomenclature (21 sections, 88 divisions, 272 groups, 615 classes, 732 sub-classes) ships as
``data/naf_rev2.csv``, extracted from INSEE's list (see ``data/PROVENANCE.md``). A code that is well
formed but not in it (``6902Z``, ``40``) is refused, naming the nearest codes that exist.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from salvo.errors import UsageError

#: SIRENE column holding the establishment's main activity, written with a dot (``69.20Z``).
NAF_COLUMN = "activitePrincipaleEtablissement"

# Digits with an optional dot after the division, and a subclass letter only after 4 digits.
_CODE = re.compile(r"^(?P<div>\d{2})(?:\.?(?P<rest>\d{1,2}))?(?P<letter>[A-Za-z])?$")

_LEVELS = {2: "division", 3: "group", 4: "class"}


@dataclass(frozen=True)
class NafCode:
    """One NAF rév. 2 code at any level: division ``43``, group ``43.2``, class ``43.29``, subclass ``43.29A``."""

    digits: str  # "4329" (2 to 4 digits)
    letter: str = ""  # "A" for a subclass

    @property
    def level(self) -> str:
        """``division``, ``group``, ``class`` or ``subclass``."""
        return "subclass" if self.letter else _LEVELS[len(self.digits)]

    @property
    def compact(self) -> str:
        """The code without its dot: ``4329A``, ``432``, ``43``."""
        return self.digits + self.letter

    @property
    def dotted(self) -> str:
        """The code as SIRENE writes it: ``43.29A``, ``43.2``, ``43``."""
        if len(self.digits) == 2:
            return self.digits
        return f"{self.digits[:2]}.{self.digits[2:]}{self.letter}"

    @property
    def niche_name(self) -> str:
        """The job's name and output folder: ``naf_4329A``."""
        return f"naf_{self.compact}"

    @property
    def is_prefix(self) -> bool:
        """Whether the code stands for every subclass under it (division, group or class)."""
        return not self.letter

    def prefix_bounds(self) -> tuple[str, str]:
        """``(low, high)`` such that a SIRENE value ``v`` is under this code iff ``low <= v < high``."""
        low = self.dotted + ("." if len(self.digits) == 2 else "")
        # The smallest string above every string that starts with `low`: bump its last character.
        return low, low[:-1] + chr(ord(low[-1]) + 1)

    def matches(self, value: str | None) -> bool:
        """Whether a SIRENE ``activitePrincipaleEtablissement`` value falls under this code."""
        if value is None:
            return False
        if not self.is_prefix:
            return value == self.dotted
        low, high = self.prefix_bounds()
        return low <= value < high

    def __str__(self) -> str:
        return self.compact


#: The nomenclature shipped with the package (code, level, section, title), and where it came from.
NOMENCLATURE_FILE = Path(__file__).with_name("data") / "naf_rev2.csv"
_SECTION = re.compile(r"^[A-Za-z]$")


@dataclass(frozen=True)
class NafEntry:
    """One row of the nomenclature: ``69.20Z``, ``subclass``, section ``M``, its title."""

    code: str
    level: str
    section: str
    title: str


@functools.cache
def nomenclature() -> dict[str, NafEntry]:
    """Every NAF rév. 2 code, dotted as INSEE writes it (``69.20Z``, ``69.2``, ``69``, ``M``)."""
    with NOMENCLATURE_FILE.open(encoding="utf-8", newline="") as fh:
        rows = [NafEntry(r["code"], r["level"], r["section"], r["title"]) for r in csv.DictReader(fh)]
    return {r.code: r for r in rows}


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of two neighbouring characters as one edit (``6902Z``/``6920Z``: 1)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def nearest_codes(naf: NafCode, limit: int = 4) -> list[str]:
    """Existing codes of the same level nearest to ``naf``: one swapped pair of characters, or one
    character off under the same parent, then the codes just before and after it in order."""
    same = sorted(c for c, e in nomenclature().items() if e.level == naf.level)
    want, parent = naf.dotted, naf.dotted[:-1]
    swapped = [c for c in same if sorted(c) == sorted(want) and _distance(c, want) == 1]
    # A division's "parent" would be its first digit, which means nothing: divisions get neighbours only.
    siblings = [] if naf.level == "division" else [c for c in same if c[:-1] == parent and _distance(c, want) == 1]
    below = [c for c in same if c < want][-1:]
    above = [c for c in same if c > want][:1]
    return list(dict.fromkeys(swapped + siblings + below + above))[:limit]


def _unknown(code: str, naf: NafCode) -> UsageError:
    table = nomenclature()
    level = "sub-class" if naf.level == "subclass" else naf.level
    near = ", ".join(f"{c} ({table[c].title})" for c in nearest_codes(naf))
    return UsageError(f"unknown NAF code {code!r}: {level} {naf.dotted} does not exist in NAF rév. 2; nearest: {near}")


def _section(code: str) -> UsageError:
    letter = code.strip().upper()
    entry = nomenclature().get(letter)
    if entry is None:
        return UsageError(
            f"unknown NAF code {code!r}: NAF rév. 2 has sections A to U only, and a filter "
            "takes a division (43), group (43.2), class (43.29) or sub-class (43.29A)"
        )
    divisions = [c for c, e in nomenclature().items() if e.level == "division" and e.section == letter]
    return UsageError(
        f"NAF code {code!r} is section {letter} ({entry.title}), which a filter does not "
        f"take: give its divisions instead: {', '.join(divisions)}"
    )


def parse_naf(code: str) -> NafCode:
    """Parse one NAF rév. 2 code (``43``, ``43.2``, ``43.29``, ``43.29A`` or ``4329A``) that exists in the
    nomenclature; raise UsageError naming it (and, for a code that does not exist, the nearest ones)."""
    text = str(code).strip()
    if _SECTION.match(text):
        raise _section(code)
    m = _CODE.match(text)
    if m is None or (m["letter"] and len(m["rest"] or "") != 2):
        raise UsageError(
            f"malformed NAF code {code!r}: expected a division (43), group (43.2), "
            "class (43.29) or subclass (43.29A or 4329A)"
        )
    if m["div"] == "00":
        raise UsageError(f"malformed NAF code {code!r}: division 00 does not exist in NAF rév. 2")
    naf = NafCode(digits=m["div"] + (m["rest"] or ""), letter=(m["letter"] or "").upper())
    if naf.dotted not in nomenclature():
        raise _unknown(code, naf)
    return naf


def parse_naf_list(codes: Iterable[str]) -> list[NafCode]:
    """Parse every code (all errors before any work), dropping duplicates and keeping the order."""
    parsed: list[NafCode] = []
    for code in codes:
        naf = parse_naf(code)
        if naf not in parsed:
            parsed.append(naf)
    if not parsed:
        raise UsageError("no NAF code given: use --naf CODE at least once")
    return parsed
