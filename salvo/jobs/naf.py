"""NAF rév. 2 activity codes: parse, normalise, and match against SIRENE's dotted values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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


def parse_naf(code: str) -> NafCode:
    """Parse one NAF code (``43``, ``43.2``, ``43.29``, ``43.29A`` or ``4329A``); raise UsageError naming it."""
    text = str(code).strip()
    m = _CODE.match(text)
    if m is None or (m["letter"] and len(m["rest"] or "") != 2):
        raise UsageError(
            f"malformed NAF code {code!r}: expected a division (43), group (43.2), "
            "class (43.29) or subclass (43.29A or 4329A)"
        )
    if m["div"] == "00":
        raise UsageError(f"malformed NAF code {code!r}: division 00 does not exist in NAF rév. 2")
    return NafCode(digits=m["div"] + (m["rest"] or ""), letter=(m["letter"] or "").upper())


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
