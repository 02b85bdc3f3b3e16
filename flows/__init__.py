"""Salvo's Prefect flows.

Importing this package sets, unless already set, what Prefect reads when it is imported: no
telemetry (a flow called from plain Python on a closed network must not try to reach Prefect's
servers), and time for a first start of the temporary API on a busy machine.
"""

import os as _os

# A heartbeat every 30 s (Prefect's default is 180): `salvo deploy`'s automation marks a run Crashed
# 90 s after its heartbeats stop (the `salvo` command turns them off: its runs are the guard's).
for _name, _value in (
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
    ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30"),
):
    _os.environ.setdefault(_name, _value)

# A flow called from plain Python talks to the same API as the `salvo` command: PREFECT_API_URL if
# set (checked), else Salvo's local server (started if needed, then reused), so that every run is
# in the UI. Only when Prefect is not imported yet (the API is chosen before its settings load), and
# never inside a test process (its API is the test harness's; a child process of a test decides
# for itself, through SALVO_LOCAL_SERVER).
import sys as _sys  # noqa: E402

if "prefect" not in _sys.modules and "pytest" not in _sys.modules:
    from cli.server import install_hook as _install_hook

    _install_hook()
