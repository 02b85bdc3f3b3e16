"""Safe rendering of a job template: three named placeholders, nothing else, values quoted for YAML."""

from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path

from salvo.errors import UsageError
from salvo.jobs.naf import NafCode
from salvo.jobs.profiles import get_profile

#: The placeholders a template may use; format-string attribute/index access is refused.
PLACEHOLDERS = ("niche_name", "naf_code", "profile")

# Text that may stand right before / right after a placeholder that is a whole YAML scalar.
_SCALAR_BEFORE = re.compile(r"(^\s*|:\s+|^\s*-\s+|[\[,{]\s*|\?\s+)$")
_SCALAR_AFTER = re.compile(r"^[ \t]*(\r?\n|$|[,\]}]|#)")


def default_template_path() -> Path:
    """The ``job_template.yaml`` shipped with Salvo."""
    return Path(str(resources.files("salvo.jobs").joinpath("job_template.yaml")))


def read_template(path: str | Path | None = None) -> str:
    """The template's text (the shipped default when ``path`` is None); a UsageError if unreadable."""
    p = default_template_path() if path is None else Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read job template {p}: {exc}") from None


def check_template(text: str, *, source: str = "template") -> list[tuple[str, str]]:
    """Split ``text`` into (literal, placeholder) pairs, refusing anything but the known placeholders."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise UsageError(
            f"{source}: invalid braces in template ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    pieces = []
    for literal, field, spec, conversion in parts:
        if field is None:
            pieces.append((literal, ""))
            continue
        if field not in PLACEHOLDERS:
            raise UsageError(
                f"{source}: unknown placeholder {{{field}}}; allowed: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            )
        if spec or conversion:
            raise UsageError(f"{source}: placeholder {{{field}}} may not carry a format spec or conversion")
        pieces.append((literal, field))
    return pieces


def _quote_state(line: str) -> str:
    """Whether the end of ``line`` is inside a double-quoted, single-quoted or no YAML string."""
    state, i = "", 0
    while i < len(line):
        ch = line[i]
        if state == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                state = ""
        elif state == "'":
            if ch == "'":
                state = ""  # a doubled '' re-enters on the next character, which is fine here
        elif ch in "\"'":
            state = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return "#"
        i += 1
    return state


def _yaml_value(value: str, *, line_before: str, text_after: str) -> str:
    """``value`` written so that YAML reads it back as the same string in this spot."""
    state = _quote_state(line_before)
    if state == '"':
        return value.replace("\\", "\\\\").replace('"', '\\"')
    if state == "'":
        return value.replace("'", "''")
    if state == "#":
        return value
    if _SCALAR_BEFORE.search(line_before) and _SCALAR_AFTER.match(text_after):
        # A whole plain scalar: quote it, or `43` would load as an int and `43.2` as a float.
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def render_template(text: str, *, naf: NafCode, profile: str, source: str = "template") -> str:
    """Render one job: fill ``{niche_name}``, ``{naf_code}`` and ``{profile}``; raise UsageError otherwise."""
    get_profile(profile)
    values = {"niche_name": naf.niche_name, "naf_code": naf.compact, "profile": profile}
    pieces = check_template(text, source=source)
    out: list[str] = []
    for index, (literal, field) in enumerate(pieces):
        out.append(literal)
        if not field:
            continue
        rendered = "".join(out)
        line_before = rendered[rendered.rfind("\n") + 1 :]
        following = pieces[index + 1][0] if index + 1 < len(pieces) else ""
        out.append(_yaml_value(values[field], line_before=line_before, text_after=following))
    return "".join(out)
