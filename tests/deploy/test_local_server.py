"""The local Prefect server salvo commands share, and what a killed command leaves behind: real processes.

- the first command starts a background `prefect server start`; the second reuses it (same PID, URL);
  `salvo server stop` stops it (process gone, state file gone);
- Ctrl-C to a command's process group does not reach the server (its own session);
- a command killed with SIGKILL leaves none of its own processes (temporary API server, warm
  zygote, the item's child) after a few seconds, and the next command marks its run Crashed;
- a PREFECT_API_URL that does not answer: one line naming it, exit 1, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deployments.server import api_healthy, read_state, stop_local_server
from salvo.procs import free_port, process_alive, processes_with_token
from salvo.samples.netcdf import write_series_file
from tests.helpers import child_env_for, salvo, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _local_env(home: Path) -> dict[str, str]:
    """A user's environment: no PREFECT_API_URL, the local server on, a private PREFECT_HOME and port."""
    env = {
        k: v for k, v in child_env_for("unused").items() if not k.startswith("PREFECT_") and k != "PYTEST_CURRENT_TEST"
    }
    env.update(
        PREFECT_HOME=str(home), SALVO_LOCAL_SERVER="1", SALVO_SERVER_PORT=str(free_port()), PREFECT_UI_ENABLED="false"
    )
    return env


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A PREFECT_HOME whose local server (if any) is stopped at the end, whatever happened."""
    h = tmp_path / "home"
    yield h
    stop_local_server(h)


def _sleeper(tmp_path: Path) -> str:
    script = tmp_path / "sleeper.py"
    script.write_text(
        textwrap.dedent("""
        import os, sys, time
        time.sleep(float(os.environ.get("SLEEP_S", "0")))
        os.makedirs(sys.argv[2], exist_ok=True)
        open(os.path.join(sys.argv[2], "plot.png"), "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00" * 32)
    """)
    )
    return f"{sys.executable} {script} {{input}} {{output_dir}}"


def _inputs(folder: Path, n: int = 1) -> Path:
    for i in range(n):
        write_series_file(folder / f"f{i}.nc", steps=4, seed=i)
    return folder


def test_the_second_command_reuses_the_background_server_and_server_stop_stops_it(tmp_path: Path, home: Path) -> None:
    env = _local_env(home)
    worker = _sleeper(tmp_path)
    first = salvo("extract", "--json", "--directory", str(_inputs(tmp_path / "a")), "--worker-command", worker, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    info = read_state(home)
    assert info is not None and info.alive() and api_healthy(info.url)
    assert "started a local Prefect server" in first.stderr
    assert json.loads(first.stdout)["summary"]["ok"] is True

    second = salvo(
        "extract", "--json", "--directory", str(_inputs(tmp_path / "b")), "--worker-command", worker, env=env
    )
    assert second.returncode == 0, second.stderr[-2000:]
    again = read_state(home)
    assert again is not None and (again.pid, again.url) == (info.pid, info.url)
    assert "started a local Prefect server" not in second.stderr
    # Both runs are in that server's database (so in its UI).
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{info.url}/flow_runs/count", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
        ),
        timeout=10,
    ) as resp:
        assert int(resp.read()) >= 2

    status = salvo("server", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["server"]["pid"] == info.pid

    stop = salvo("server", "stop", env=env)
    assert stop.returncode == 0 and f"PID {info.pid}" in stop.stdout
    assert wait_until(lambda: not process_alive(info.pid), timeout=20)
    assert not (home / "salvo-server.json").exists()
    assert salvo("server", "status", env=env).returncode == 1


def test_deleting_prefect_home_ends_its_local_server(tmp_path: Path, home: Path) -> None:
    env = _local_env(home)
    assert salvo("server", "start", env=env).returncode == 0
    info = read_state(home)
    assert info is not None
    server = [c.pid for c in psutil.Process(info.pid).children()]
    assert len(server) == 1
    import shutil

    shutil.rmtree(home)
    assert wait_until(lambda: not process_alive(info.pid) and not process_alive(server[0]), timeout=60)


def test_two_commands_starting_at_once_share_one_server(tmp_path: Path, home: Path) -> None:
    env = _local_env(home)
    argv = [sys.executable, "-m", "cli", "server", "start", "--timeout", "240"]
    procs = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    info = read_state(home)
    assert info is not None
    assert sorted(o[0].split()[0] for o in outs) == ["Already", "Started"]  # one started it, the other found it
    assert all(f"PID {info.pid}" in o[0] for o in outs)
    servers = [
        p
        for p in psutil.process_iter(["cmdline", "environ"])
        if "server" in (p.info["cmdline"] or [])
        and "start" in (p.info["cmdline"] or [])
        and "deployments.server" not in (p.info["cmdline"] or [])
        and (p.info["environ"] or {}).get("PREFECT_HOME") == str(home)
    ]
    assert [p.ppid() for p in servers] == [info.pid]  # one server, under the guard the state file names


def test_ctrl_c_to_a_command_does_not_reach_the_local_server(tmp_path: Path, home: Path) -> None:
    env = {**_local_env(home), "SLEEP_S": "60"}
    start = salvo("server", "start", env=env)
    assert start.returncode == 0, start.stderr
    info = read_state(home)
    assert info is not None
    cmd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "extract",
            "--directory",
            str(_inputs(tmp_path / "in")),
            "--worker-command",
            _sleeper(tmp_path),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _item_children(cmd.pid), timeout=180), "the item never started"
        os.killpg(cmd.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: SIGINT to the foreground group
        cmd.wait(timeout=120)
    finally:
        if cmd.poll() is None:
            os.killpg(cmd.pid, signal.SIGKILL)
            cmd.wait()
    assert info.alive() and api_healthy(info.url)


def _item_children(pid: int) -> list[int]:
    return _running_below(pid, "sleeper.py")


def _token_of(driver: int) -> str | None:
    try:
        for c in psutil.Process(driver).children():
            line = c.cmdline()
            if "salvo.procs" in line and "reap" in line:
                return line[-1]
    except psutil.NoSuchProcess:
        pass
    return None


def _describe(pids: set[int]) -> dict[int, tuple[str, int]]:
    """pid -> (first words of its command line, its session id), for those alive now."""
    out = {}
    for pid in pids:
        try:
            out[pid] = (" ".join(psutil.Process(pid).cmdline()[:4]), os.getsid(pid))
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return out


def _running_below(driver: int, needle: str) -> list[int]:
    """Processes below ``driver`` whose command line contains ``needle`` (exec'd, not mid-fork)."""
    try:
        children = psutil.Process(driver).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for c in children:
        try:
            if needle in " ".join(c.cmdline()):
                found.append(c.pid)
        except psutil.Error:
            continue
    return found


def _kill_driver_mid_item(
    tmp_path: Path, env: dict[str, str], *, also: str | None = None
) -> tuple[set[int], str, dict[int, tuple[str, int]]]:
    """Start `salvo extract` with a 120 s item, SIGKILL it once the item runs (and, with ``also``, once a
    process with that in its command line runs too); return its processes and token."""
    cmd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "extract",
            "--directory",
            str(_inputs(tmp_path / "slow")),
            "--worker-command",
            _sleeper(tmp_path),
        ],
        env={**env, "SLEEP_S": "120"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _item_children(cmd.pid), timeout=240), "the item never started"
        if also:  # Prefect may still be starting it (it was caught mid-fork) when the item already runs
            assert wait_until(lambda: _running_below(cmd.pid, also), timeout=120), f"no process running {also!r}"
        token = _token_of(cmd.pid)
        assert token
        tree = {c.pid for c in psutil.Process(cmd.pid).children(recursive=True)} | set(processes_with_token(token))
        reaper = {c.pid for c in psutil.Process(cmd.pid).children() if "reap" in c.cmdline()}
        seen = _describe(tree - reaper)
        cmd.send_signal(signal.SIGKILL)
        cmd.wait()
    finally:
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
    return tree - reaper, token, seen


def test_a_sigkilled_command_on_the_temporary_api_leaves_no_process_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in child_env_for("unused").items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), SALVO_LOCAL_SERVER="0")
    tree, token, seen = _kill_driver_mid_item(tmp_path, env, also="-m uvicorn")
    names = {pid: n for pid, (n, _) in seen.items()}
    assert any("uvicorn" in n for n in names.values()), f"expected the temporary API server among {names}"
    # It runs in a session of its own, so a terminal's Ctrl-C (SIGINT to the command's group) does not reach it.
    assert all(sid == pid for pid, (n, sid) in seen.items() if "uvicorn" in n), seen
    assert any("salvo.zygote" in n for n in names.values()), names
    t0 = time.monotonic()
    assert wait_until(
        lambda: not any(process_alive(p) for p in tree) and not processes_with_token(token), timeout=10
    ), {pid: names.get(pid) for pid in tree if process_alive(pid)}
    print(f"all {len(tree)} processes of the killed command gone {time.monotonic() - t0:.1f} s after SIGKILL")


def test_the_next_command_marks_a_killed_commands_run_crashed(tmp_path: Path, prefect_api: str) -> None:
    env = child_env_for(prefect_api)
    tree, token, _ = _kill_driver_mid_item(tmp_path, env)
    assert wait_until(lambda: not any(process_alive(p) for p in tree), timeout=10)

    def killed_runs() -> list[dict]:
        running = _runs(prefect_api, "RUNNING")
        return [r for r in running if any(t.startswith("salvo-driver:") for t in r["tags"]) and "slow" in r["name"]]

    # The API may show the killed run's Running state a moment after the driver died (a loaded machine).
    wait_until(lambda: killed_runs(), timeout=30, interval=0.5)
    killed = killed_runs()
    slow = _post(f"{prefect_api}/flow_runs/filter", {"flow_runs": {"name": {"like_": "slow"}}, "limit": 20})
    assert len(killed) == 1, [(r["name"], r["state"] and r["state"]["type"]) for r in slow]  # type: ignore[union-attr, index]
    nxt = salvo(
        "extract",
        "--json",
        "--directory",
        str(_inputs(tmp_path / "next")),
        "--worker-command",
        _sleeper(tmp_path),
        env=env,
    )
    assert nxt.returncode == 0, nxt.stderr[-2000:]
    run = _read_run(prefect_api, killed[0]["id"])
    assert run["state"]["type"] == "CRASHED", run["state"]
    assert "driver" in run["state"]["message"]
    # The driver tag is on the flow run only: a task run with a tag costs an API call for Prefect's
    # tag concurrency slots, one per item. (The next command's run: it ended normally, so its task
    # runs have reached the API; the killed one's may not have.)
    nxt_run = _post(
        f"{prefect_api}/flow_runs/filter",
        {"flow_runs": {"name": {"like_": "-next-"}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 1},
    )
    assert nxt_run and any(t.startswith("salvo-driver:") for t in nxt_run[0]["tags"]), nxt_run  # type: ignore[index, arg-type]
    tasks = lambda: _post(f"{prefect_api}/task_runs/filter", {"flow_runs": {"id": {"any_": [nxt_run[0]["id"]]}}})  # type: ignore[index]  # noqa: E731
    assert wait_until(lambda: tasks(), timeout=60), "the next command's task run was never recorded"
    assert all(not tr["tags"] for tr in tasks()), [tr["tags"] for tr in tasks()]  # type: ignore[union-attr]


def test_an_unreachable_prefect_api_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    env = child_env_for(url)
    proc = salvo("extract", "--directory", str(_inputs(tmp_path / "in")), env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and url in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "in").glob("*_results")), "nothing may run without the API"


def _post(url: str, body: dict) -> object:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _runs(api: str, state: str) -> list[dict]:
    return _post(f"{api}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": [state]}}}, "limit": 200})  # type: ignore[return-value]


def _read_run(api: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=30) as resp:
        return json.loads(resp.read())
