"""What a batch is made of: items, and the worker that runs each one."""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from salvo.errors import UsageError

WorkerKind = Literal["python", "command"]


@dataclass(frozen=True)
class Item:
    """One unit of work: its id, the files whose content keys resume, and the worker's params."""

    id: str
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Worker:
    """How to run an item: a Python function in a warm process, or an external command."""

    kind: WorkerKind
    target: str
    verify: str | None = None
    version: str = ""
    preload: tuple[str, ...] = ()
    #: Params naming output folders the runner stages (see ``salvo.contract``); not part of the identity.
    stage: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "python" and ":" not in self.target:
            raise UsageError(f"python worker must be 'module:function', got {self.target!r}")
        if self.kind == "command":
            template_fields(self.target)  # fail early on a malformed template

    @property
    def identity(self) -> str:
        """What about the worker keys resume: its kind, target and version."""
        return f"{self.kind}|{self.target}|{self.verify or ''}|{self.version}"


def template_fields(template: str) -> list[str]:
    """The placeholder names of a command template; refuse attribute, index and format tricks."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"bad command template {template!r}: {exc}") from exc
    for _literal, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise UsageError(f"bad placeholder {{{name}}} in command template: use plain {{name}}")
        names.append(name)
    return names


def render_command(template: str, params: Mapping[str, Any]) -> list[str]:
    """Split a command template into argv first, then fill each argument's placeholders.

    No shell is involved, so values need no quoting; a placeholder that is a whole argument and
    whose value is a list becomes several arguments (``{options}`` -> ``--a 1 --b``).
    """
    names = template_fields(template)
    missing = [n for n in names if n not in params]
    if missing:
        raise UsageError(f"unknown placeholder {{{missing[0]}}} in command template")
    try:
        tokens = shlex.split(template)
    except ValueError as exc:
        raise UsageError(f"bad command template {template!r}: {exc}") from exc
    argv: list[str] = []
    for token in tokens:
        fields = template_fields(token)
        if len(fields) == 1 and token == f"{{{fields[0]}}}" and isinstance(params[fields[0]], (list, tuple)):
            argv.extend(str(v) for v in params[fields[0]])
        else:
            argv.append(token.format(**{n: params[n] for n in fields}))
    if not argv:
        raise UsageError("empty command template")
    return argv
