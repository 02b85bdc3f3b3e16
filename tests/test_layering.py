"""The domain package stays plain: importing all of salvo/ never imports Prefect, nor an HTTP client.

Speaking to the Prefect server by HTTP is the job of ``deployments.server`` (health, the local
server and its guard) and ``deployments.runs`` (run names, crashed-run marking) alone.
"""

from __future__ import annotations

import functools
import pkgutil
import subprocess
import sys

import pytest

import salvo

#: Modules that speak HTTP: none of them may be imported by the domain.
HTTP_MODULES = ("urllib.request", "http.client", "requests", "httpx")


@functools.lru_cache(maxsize=None)
def _loaded_after_importing(modules: tuple[str, ...]) -> frozenset[str]:
    """Every module a fresh interpreter holds after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for m in {list(modules)!r}:\n"
        "    importlib.import_module(m)\n"
        "print(','.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return frozenset(proc.stdout.strip().split(","))


def _salvo_modules() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.walk_packages(salvo.__path__, "salvo.")))


def _http_clients(loaded: frozenset[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in HTTP_MODULES))


def test_salvo_never_imports_prefect() -> None:
    modules = _salvo_modules()
    assert "salvo.runner" in modules and len(modules) > 10
    assert {"salvo.spine.records", "salvo.spine.settled", "salvo.spine.extract_settled"} <= set(modules)
    loaded = _loaded_after_importing(modules)
    bad = sorted(m for m in loaded if m == "prefect" or m.startswith("prefect.") or m.startswith("prefect_"))
    assert bad == []


def test_salvo_speaks_no_http() -> None:
    modules = _salvo_modules()
    assert "salvo.procs" in modules and "salvo.storage" in modules
    assert _http_clients(_loaded_after_importing(modules)) == []


def test_only_deployments_server_and_runs_speak_http_to_the_prefect_server() -> None:
    # The check above sees an HTTP speaker: each of the two modules that talk to the server does load one.
    for module in ("deployments.server", "deployments.runs"):
        assert "urllib.request" in _http_clients(_loaded_after_importing((module,))), module
    # And what they do is not in the domain package any more.
    modules = _salvo_modules()
    assert "salvo.runnames" not in modules
    import salvo.procs

    for name in ("api_healthy", "wait_healthy", "ensure_local_server", "running_server", "stop_local_server"):
        assert not hasattr(salvo.procs, name), name


@pytest.mark.pure
def test_the_architecture_page_lists_every_module_and_salvo_imports_no_upper_layer() -> None:
    """docs/ARCHITECTURE.md's "The tree, by layer" names every module (it is redrawn when the tree changes),
    and no module of salvo/ imports cli, flows, tasks, blocks or deployments."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "ARCHITECTURE.md").read_text()
    section = page.split("## The tree, by layer", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `([\w/]+\.py)`", section, flags=re.M))
    folders = ("cli", "flows", "tasks", "blocks", "deployments", "salvo_compat", "salvo")
    modules = {
        str(p.relative_to(root))
        for top in folders
        for p in (root / top).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") or p.stat().st_size >= 200
    }
    modules.discard("cli/__main__.py")
    assert modules - listed == set(), "modules missing from docs/ARCHITECTURE.md"
    assert listed - modules == set(), "docs/ARCHITECTURE.md lists modules that are gone"
    upward = re.compile(r"^\s*(from|import) (cli|flows|tasks|blocks|deployments)\b", re.M)
    offenders = [str(p) for p in (root / "salvo").rglob("*.py") if upward.search(p.read_text())]
    assert offenders == []
