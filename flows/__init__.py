"""Salvo's Prefect flows.

Importing this package sets, unless already set, what Prefect reads when it is imported: no
telemetry (a flow called from plain Python on a closed network must not try to reach Prefect's
servers), and time for a first start of the temporary API on a busy machine.
"""

import os as _os

for _name, _value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DO_NOT_TRACK", "1"),
                      ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")):
    _os.environ.setdefault(_name, _value)
