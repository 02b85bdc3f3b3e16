"""Stand-ins for users' own commands, for the trust tests: each reads what to do from a mode file.

usage: python workers.py KIND MODE_FILE OUT [ARGS...]
KIND ``plot``: an extract ``--worker-command`` (``OUT`` = ``{output_dir}``); mode ``good`` writes a
real PNG plot and ``log.txt``, ``log`` writes only ``log.txt`` and exits 0.
KIND ``job``: a jobs ``--job-command`` (``OUT`` = ``{job_output_dir}``); ``good`` writes
``dataset.csv`` and ``build.log``, ``log`` only ``build.log``.
KIND ``subject``: a subjects ``--pipeline-command`` (``OUT`` = ``{work_dir}``); ``good`` writes
``result.txt`` and ``metrics.json``, ``log`` only ``log.txt``.
Every run appends a line to ``MODE_FILE.runs``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1, 3, 2])
    fig.savefig(path, dpi=40)
    plt.close(fig)


def main() -> int:
    kind, mode_file, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    mode = mode_file.read_text().strip()
    with open(f"{mode_file}.runs", "a") as fh:
        fh.write(f"{kind} {mode} {out}\n")
    out.mkdir(parents=True, exist_ok=True)
    if kind == "plot":
        (out / "log.txt").write_text(f"plotting {sys.argv[4:]}\n")
        if mode == "good":
            _png(out / "plot.png")
    elif kind == "job":
        (out / "build.log").write_text("building\n")
        if mode == "good":
            (out / "dataset.csv").write_text("siret,naf\n1,69.20Z\n2,69.20Z\n")
    elif kind == "subject":
        (out / "log.txt").write_text("started\n")
        if mode == "good":
            (out / "result.txt").write_text("fa 0.4\n")
            (out / "metrics.json").write_text(json.dumps({"fa_mean": 0.4}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
