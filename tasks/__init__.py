"""Salvo's Prefect tasks (salvo's functions wrapped as tasks).

Like `flows`, importing this package sets, unless already set: no telemetry, and time for a first
start of the temporary API on a busy machine, before Prefect is imported.
"""

import os as _os

for _name, _value in (
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
):
    _os.environ.setdefault(_name, _value)
