"""Salvo's Prefect flows.

Importing this package writes nothing. A flow called from plain Python talks to the same API as the
`salvo` command: PREFECT_API_URL if set (checked), else Salvo's local server (started if needed,
then reused), so that every run is in the UI. For that, importing this package installs an import
hook (`cli.server.install_hook`) that, on the first ``import prefect`` (the API is chosen before
Prefect's settings load), writes the environment defaults (no telemetry: a flow called on a closed
network must not try to reach Prefect's servers; time for a first start of the temporary API; a
heartbeat every 30 s, see `deployments.prefect_patches.ENVIRONMENT_DEFAULTS`) and chooses the API.
Only when Prefect is not imported yet, and never inside a test process (its API is the test
harness's; a child process of a test decides for itself, through SALVO_LOCAL_SERVER).
"""

import sys as _sys

if "prefect" not in _sys.modules and "pytest" not in _sys.modules:
    from cli.server import install_hook as _install_hook

    _install_hook()
