"""The one table of pipelines (salvo/pipelines.py) against everything that reads or repeats it:
the CLI's commands, the demos, run options, run names, the flows and deployments/prefect.yaml."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from salvo.pipelines import PIPELINES, all_flows, pipeline

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]


@pytest.mark.pure
def test_every_spelling_names_exactly_one_pipeline() -> None:
    spellings: dict[str, str] = {}
    for p in PIPELINES.values():
        for name in {p.name, p.command, *p.aliases, *(f.name for f in p.flows)}:
            assert spellings.setdefault(name, p.name) == p.name, f"{name!r} names {spellings[name]} and {p.name}"
            assert pipeline(name) is p
    with pytest.raises(KeyError, match="no pipeline"):
        pipeline("no-such-pipeline")


@pytest.mark.pure
def test_each_pipeline_has_its_package_docs_page_and_demo_module() -> None:
    for p in PIPELINES.values():
        assert (ROOT / "salvo" / p.name / "__init__.py").is_file(), p.name
        assert (ROOT / p.docs).is_file(), p.docs
        assert (ROOT / "cli" / f"demo_{p.demo}.py").is_file(), p.demo
        assert (ROOT / "cli" / f"{p.cli_module}.py").is_file(), p.cli_module


@pytest.mark.pure
def test_every_cli_command_is_a_pipelines_or_a_tool() -> None:
    from cli.main import COMMANDS, TOOLS, build_parser

    def commands(module: str | None = None) -> set[str]:
        return set(build_parser(module)._subparsers._group_actions[0].choices)  # type: ignore[union-attr]

    assert COMMANDS == [*(p.cli_module for p in PIPELINES.values()), *TOOLS]
    left = commands()  # every command of `salvo`
    for tool in TOOLS:
        left -= commands(tool)
    for p in PIPELINES.values():
        own = commands(p.cli_module)
        assert p.command in own, p.command
        assert own <= {p.command, *p.aliases}, f"cli/{p.cli_module}.py registers {own - {p.command, *p.aliases}}"
        left -= own
    assert not left, f"commands neither a tool's nor in the table of pipelines: {left}"


@pytest.mark.pure
def test_the_demos_are_the_tables() -> None:
    from cli.demo import DEMOS
    from cli.main import build_parser

    assert DEMOS == [p.demo for p in PIPELINES.values()] == list(PIPELINES)
    parser = build_parser("demo")
    assert parser.parse_args(["demo", "--only", "gridded"]).only == ["gridded"]
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--only", "recover"])


@pytest.mark.pure
def test_run_options_and_run_names_read_the_table() -> None:
    from salvo.options import PIPELINE_TIMEOUT_S, RunOptions
    from deployments.runs import NAME_PARAMS

    assert PIPELINE_TIMEOUT_S == {p.flow_name: p.timeout_s for p in PIPELINES.values()}
    assert NAME_PARAMS == {f.name: f.name_params for f in all_flows()}
    for p in PIPELINES.values():
        defaults = RunOptions.for_pipeline(p.flow_name)
        assert defaults.timeout_s == p.timeout_s and defaults.fail_fast is (p.fail_fast == "on"), p.name
        # What the flow runs with: "always" holds whatever the run says, "on" and "off" are defaults.
        told = RunOptions.of(p.flow_name, {"fail_fast": False})
        assert told.fail_fast is (p.fail_fast == "always"), p.name
    assert RunOptions.of("assembly-run", None).fail_fast and RunOptions.of("assembly-run", RunOptions()).fail_fast


@pytest.mark.pure
def test_prefect_yaml_deploys_exactly_the_tables_flows() -> None:
    deployed = {(d["entrypoint"], d["name"]) for d in DEPLOYMENTS}
    table = {(f.entrypoint, name) for f in all_flows() for name in f.deployments}
    assert deployed == table, f"only in prefect.yaml: {deployed - table}; only in the table: {table - deployed}"
    assert len(deployed) == len(DEPLOYMENTS), "a deployment is listed twice"
    by_entrypoint = {f.entrypoint: f for f in all_flows()}
    for d in DEPLOYMENTS:  # runs are told apart by their flow's tag (run naming, notifications)
        assert by_entrypoint[d["entrypoint"]].name in d["tags"], d["entrypoint"]


def test_every_flow_path_imports_to_the_prefect_flow_of_that_name() -> None:
    from prefect import Flow

    for p in PIPELINES.values():
        for f in p.flows:
            module, function = f.path.split(":")
            obj = getattr(importlib.import_module(module), function)
            assert isinstance(obj, Flow) and obj.name == f.name, f.path
