"""deployments/prefect.yaml against the flows it deploys, and the `salvo deploy` settings (no server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deployments.serve import PREFECT_FILE, ROOT, deployable_file, deployment_env
from cli.main import main
from salvo.pipelines import all_flows
from tests.helpers import salvo

DEPLOYMENTS = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
PIPELINES = {f.name for f in all_flows()}  # the table of pipelines' flows (salvo/pipelines.py)


def _templated(deployment: dict, env: dict[str, str]) -> dict:
    """The deployment as `prefect deploy` sees it once the SALVO_* variables are applied."""
    from prefect.utilities.templating import apply_values

    # Prefect reads `{{ $NAME }}` placeholders from os.environ itself, whatever values are given.
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        return apply_values(deployment, os.environ, remove_notset=False)


def _flow(entrypoint: str):  # noqa: ANN202
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(ROOT / entrypoint))


def test_one_deployment_per_pipeline_flow_on_one_process_pool() -> None:
    names = {_flow(d["entrypoint"]).name for d in DEPLOYMENTS}
    assert names == PIPELINES and len(DEPLOYMENTS) == len(PIPELINES)
    pools = {_templated(d, deployment_env())["work_pool"]["name"] for d in DEPLOYMENTS}
    assert pools == {"salvo-process"}
    for d in DEPLOYMENTS:
        assert d["description"].strip() and "salvo" in d["tags"], d["entrypoint"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["entrypoint"].split(":")[1])
def test_default_parameters_fit_the_flow_signature(deployment: dict, tmp_path: Path) -> None:
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    d = _templated(deployment, deployment_env(data=str(tmp_path)))
    schema = parameter_schema(_flow(d["entrypoint"])).model_dump_for_openapi()
    assert set(d["parameters"]) <= set(schema["properties"]), sorted(set(d["parameters"]) - set(schema["properties"]))
    validate(d["parameters"], schema, raise_on_error=True, ignore_required=True)
    for name in set(schema.get("required", [])) - set(d["parameters"]):
        assert f"{name}=" in d["description"], f"{name} is required: the description must say how to give it"
    assert "{{" not in str(d["parameters"])


def test_nightly_schedules_are_settings_with_defaults() -> None:
    scheduled = {d["entrypoint"] for d in DEPLOYMENTS if d.get("schedules")}
    assert scheduled == {"flows/netcdf_extract.py:netcdf_extract", "flows/assembly.py:assembly_run"}
    default = [_templated(d, deployment_env()) for d in DEPLOYMENTS if d.get("schedules")]
    assert all(d["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": "true"}] for d in default)
    changed = deployment_env(cron="30 3 * * 1-5", timezone="Europe/Paris", schedules_active=False)
    for d in DEPLOYMENTS:
        if d.get("schedules"):
            assert _templated(d, changed)["schedules"] == [
                {"cron": "30 3 * * 1-5", "timezone": "Europe/Paris", "active": "false"}
            ]


def test_environment_variables_override_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SALVO_NIGHTLY_CRON", "0 4 * * *")
    monkeypatch.setenv("SALVO_DATA", str(tmp_path))
    env = deployment_env()
    assert env["SALVO_NIGHTLY_CRON"] == "0 4 * * *" and env["SALVO_DATA"] == str(tmp_path.resolve())
    assert deployment_env(cron="0 5 * * *")["SALVO_NIGHTLY_CRON"] == "0 5 * * *"


def test_the_packaged_file_is_deployed_as_is_when_every_flow_exists() -> None:
    path, missing = deployable_file()
    assert (path, missing) == (PREFECT_FILE, [])


def test_a_deployment_whose_flow_file_is_absent_is_left_out(tmp_path: Path) -> None:
    doc = yaml.safe_load(PREFECT_FILE.read_text())
    doc["deployments"].append({"name": "x", "entrypoint": "flows/not_there.py:nothing"})
    src = tmp_path / "prefect.yaml"
    src.write_text(yaml.safe_dump(doc))
    path, missing = deployable_file(src)
    try:
        assert missing == ["flows/not_there.py:nothing"]
        assert [d["entrypoint"] for d in yaml.safe_load(path.read_text())["deployments"]] == [
            d["entrypoint"] for d in DEPLOYMENTS
        ]
    finally:
        path.unlink()


def test_print_env_shows_the_settings_prefect_deploy_needs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["deploy", "--print-env", "--cron", "15 1 * * *", "--no-schedule", "--data", str(tmp_path)]) == 0
    lines = set(capsys.readouterr().out.splitlines())
    assert {
        "export SALVO_NIGHTLY_CRON='15 1 * * *'",
        "export SALVO_SCHEDULES_ACTIVE=false",
        f"export SALVO_DATA={tmp_path.resolve()}",
    } <= lines


def test_a_bad_cron_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--print-env", "--cron", "every night"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("salvo: error: bad --cron/--timezone 'every night'") and err.count("\n") == 1


def test_deploy_without_a_server_says_how_to_get_one(child_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in child_env.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    proc = salvo("deploy", env=env)
    assert proc.returncode == 2
    assert "no Prefect API" in proc.stderr and proc.stderr.count("\n") == 1


def test_serve_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"port {port} is already in use" in capsys.readouterr().err


def test_a_bad_timezone_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--print-env", "--timezone", "Mars/Olympus_Mons"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("salvo: error: bad --cron/--timezone '0 2 * * *' 'Mars/Olympus_Mons'") and err.count("\n") == 1
    )


def test_the_subject_batch_deployment_takes_either_a_manifest_or_a_bids_dir() -> None:
    doc = yaml.safe_load(PREFECT_FILE.read_text())
    (subjects,) = [d for d in doc["deployments"] if d["entrypoint"].endswith(":subject_batch")]
    assert "bids_dir" not in subjects["parameters"] and "manifest" not in subjects["parameters"]


def test_every_deployment_is_tagged_with_its_pipeline_for_run_names() -> None:
    from deployments.serve import NAME_PARAMS

    doc = yaml.safe_load(PREFECT_FILE.read_text())
    for d in doc["deployments"]:
        assert "salvo" in d["tags"] and len(set(d["tags"]) & set(NAME_PARAMS)) == 1, d["tags"]


@pytest.mark.pure
def test_crash_after_is_a_duration_above_the_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.serve import HEARTBEAT_GRACE_S, HEARTBEAT_S, crash_after_s
    from salvo.errors import UsageError

    monkeypatch.delenv("SALVO_CRASH_AFTER", raising=False)
    assert crash_after_s(deployment_env()) == HEARTBEAT_GRACE_S
    assert crash_after_s(deployment_env(crash_after_s="2m")) == 120
    for bad in (f"{HEARTBEAT_S}s", "10s", "soon", "-5"):
        with pytest.raises(UsageError, match="--crash-after") as err:
            crash_after_s(deployment_env(crash_after_s=bad))
        assert "\n" not in str(err.value)
