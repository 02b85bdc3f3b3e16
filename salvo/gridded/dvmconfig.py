"""dvmdostem's own configuration file, ``config/config.js``: JSON with ``//`` comments.

Salvo reads the run-mask (``IO.runmask_file``) and the output folder (``IO.output_dir``) from it,
as dvmdostem's cluster scripts do, and writes a copy per batch that points at the batch's own
run-mask and output folder. Relative paths are relative to the folder the model runs in (the
working folder), as dvmdostem resolves them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from salvo.errors import UsageError
from salvo.fsutil import atomic_write_text


def strip_comments(text: str) -> str:
    """``text`` without ``//`` and ``/* */`` comments outside strings (a URL in a string keeps its ``//``)."""
    out, i, n = [], 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration as a dict; one line naming the file when it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(strip_comments(text))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config: {path} is not dvmdostem's JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("IO"), dict):
        raise UsageError(f"--config: {path} has no IO section (dvmdostem's config.js names its files there)")
    return doc


def config_paths(
    doc: dict[str, Any], *, config: str | os.PathLike[str], cwd: str | os.PathLike[str] = "."
) -> tuple[str, str]:
    """The run-mask and output folder the configuration names, resolved against the working folder."""
    io = doc["IO"]
    for key in ("runmask_file", "output_dir"):
        if not isinstance(io.get(key), str) or not io[key].strip():
            raise UsageError(f"--config: {config} has no IO.{key}")
    base = Path(cwd)
    return str(base / io["runmask_file"]), str(base / io["output_dir"].rstrip("/"))


def write_batch_config(doc: dict[str, Any], path: str | os.PathLike[str], *, mask: str, output: str) -> Path:
    """A copy of the configuration whose run-mask and output folder are the batch's (absolute paths)."""
    copy = json.loads(json.dumps(doc))
    copy["IO"]["runmask_file"] = str(Path(mask).absolute())
    copy["IO"]["output_dir"] = str(Path(output).absolute()) + "/"
    return atomic_write_text(path, json.dumps(copy, indent=2) + "\n")
