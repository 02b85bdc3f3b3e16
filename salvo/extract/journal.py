"""``batch_resume.txt`` kept current while a batch runs: one line appended per finished file.

The seed rewrote the whole list every 5 files; Salvo rewrote it every 5 files but at most once a
second, so after a kill -9 it could miss many finished files (issue 22.10). Rewriting the whole list
after every file is quadratic (10,000 files: 50 million lines written). Instead the list is started
once (an atomic write: empty), and each finished file appends its own line with one ``write`` call
on a file opened ``O_APPEND``: the kernel completes a ``write`` even when the process is killed
with SIGKILL the next instant, and concurrent appends never interleave, so every file reported
finished is in the list, one name a line, in the seed's format. (A power cut is another matter:
the records under ``.salvo/`` are the truth; the list is the seed's convenience.) At the end of the
batch the list is rewritten atomically in input order, as before.

A journal Salvo is appending to is its own list, not a seed-era list to import: its
``(device, inode)`` is remembered beside the hashes of the lists Salvo wrote (``resume_files``),
until the list is replaced (the next journal, or the final rewrite), so that a reused inode number
is not mistaken for it. In the one window left (after a crash, a seed run rewriting that same file
in place) the list is not imported and its files are processed again: more work, never a stale plot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from salvo.items import Item
from salvo.outcome import ItemResult

#: Characters that end a line for Python's ``str.splitlines`` (the way such lists are read back):
#: a file name holding one cannot be one name a line.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def journal_mark(st: os.stat_result) -> str:
    """The token remembered for a journal file (see ``salvo.extract.resume_files``)."""
    return f"journal:{st.st_dev}:{st.st_ino}"


class ResumeJournal:
    """Appends each finished (succeeded or skipped) file of one batch to ``batch_resume.txt``.

    ``entries``: item id -> its line (the id relative to ``--directory``, or in the seed layout
    the path as globbed). ``outputs``: item id -> its output folder, to tell this batch's items
    from another batch's in the same process. Call it with each result (the flow's ``on_result``)
    and, where the items run in this process, with ``(item, result)`` as each ends
    (an ``item_finished`` listener, `salvo.listeners`): a file is listed once, whichever comes first.
    """

    def __init__(self, root: str | os.PathLike[str], entries: Mapping[str, str], outputs: Mapping[str, str]) -> None:
        from salvo.extract import RESUME_FILE, remember_resume_lists

        self.path = Path(root) / RESUME_FILE
        self.entries, self.outputs = dict(entries), dict(outputs)
        self.listed: set[str] = set()
        self.lock = threading.Lock()
        self.fd: int | None = None
        tmp = self.path.with_name(f".salvo-tmp-{RESUME_FILE}-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            self.fd = fd
            # Marked before it has the list's name; an earlier journal's mark goes (its file is replaced now).
            remember_resume_lists(root, [], marks=[journal_mark(os.fstat(fd))], replaced=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            self._give_up(exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def __call__(self, result: ItemResult) -> None:
        self.add(result.item_id, result)

    def on_finish(self, item: Item, result: ItemResult) -> None:
        """An ``item_finished`` listener (`salvo.listeners`): only this batch's items (same id and output folder)."""
        if item.outputs and self.outputs.get(item.id) == item.outputs[0]:
            self.add(item.id, result)

    def add(self, item_id: str, result: ItemResult) -> None:
        if not result.status.ok or item_id not in self.entries:
            return
        with self.lock:
            if item_id in self.listed or self.fd is None:
                return
            self.listed.add(item_id)
            try:
                os.write(self.fd, (self.entries[item_id] + "\n").encode("utf-8", "surrogateescape"))
            except OSError as exc:
                self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """A full disk: batch_resume.txt is the seed's courtesy list, not Salvo's record of what finished
        (the records are): one warning line, and the batch goes on without it."""
        from salvo.fsutil import disk_full_reason

        why = disk_full_reason(exc)
        if why is None:
            raise exc
        logging.getLogger("salvo.extract").warning("batch_resume.txt not kept up to date: %s", why)
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
