"""A stand-in for a user's pipeline command, used by the tests through ``--pipeline-command``.

usage: python fake_pipeline.py --id ID --out WORK_DIR --plan PLAN.json [pipeline flags...]
PLAN.json maps a subject id to a behaviour: ok, fail, segv, hang, sleep:<seconds> or
wait:<file> (block until the file exists); each
invocation appends a line to <plan folder>/markers/<id>.runs, so tests can count runs.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--plan", required=True)
    args, flags = parser.parse_known_args()
    plan_path = Path(args.plan)
    behaviour = json.loads(plan_path.read_text()).get(args.id, "ok")
    markers = plan_path.parent / "markers"
    markers.mkdir(exist_ok=True)
    with open(markers / f"{args.id}.runs", "a") as fh:
        fh.write(f"{os.getpid()} {' '.join(flags)}\n")
    out = Path(args.out)
    (out / "started.txt").write_text("started\n")
    if behaviour.startswith("wait:"):
        while not os.path.exists(behaviour.split(":", 1)[1]):
            time.sleep(0.05)
    elif behaviour.startswith("sleep:"):
        time.sleep(float(behaviour.split(":")[1]))
    elif behaviour == "fail":
        print(f"{args.id}: tract seeding failed", file=sys.stderr)
        sys.exit(3)
    elif behaviour == "segv":
        sys.stderr.flush()
        ctypes.string_at(0)  # a real segmentation fault
    elif behaviour == "hang":
        print(f"{args.id}: step 2 of 3: tracking streamlines", file=sys.stderr, flush=True)
        grandchild = subprocess.Popen(["sleep", "600"])
        (markers / f"{args.id}.pids").write_text(f"{os.getpid()} {grandchild.pid}\n")
        while True:
            time.sleep(1)
    (out / "result.txt").write_text(f"{args.id} {' '.join(flags)}\n")
    (out / "metrics.json").write_text(json.dumps({"fa_mean": 0.4 + 0.01 * len(args.id), "n_flags": len(flags)}))
    print(f"{args.id}: done")


if __name__ == "__main__":
    main()
