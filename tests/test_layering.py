"""The domain package stays plain: importing all of salvo/ never imports Prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import salvo


def test_salvo_never_imports_prefect() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(salvo.__path__, "salvo."))
    assert "salvo.runner" in modules and len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules"
        " if m == 'prefect' or m.startswith('prefect.') or m.startswith('prefect_'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
