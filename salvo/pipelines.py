"""The one table of Salvo's pipelines: what each is called where, and what differs between them.

Every reader takes its facts from here: the run options (`salvo.options`: default timeout and
fail-fast), run names (`deployments.runs.NAME_PARAMS`), the CLI (`cli.main.COMMANDS`), the demo
(`cli.demo.DEMOS`), each flow's and CLI module's ``PIPELINE``, notifications, and
`deployments/prefect.yaml` (a file Prefect reads: ``tests/spine/test_pipelines.py`` holds it to
this table, both ways). A sixth pipeline is one row here (plus its own modules).

One name per pipeline (``name``): its package (``salvo/<name>``), demo and docs page. The other
spellings are kept on purpose, each for someone who already relies on it: a flow's name is in its
deployments (``netcdf-extract/nightly``), run names, tags and the resume keys of every record
already written (renaming it would redo every finished item), and a command is the seed's users'
spelling. Plain data: no Prefect, nothing imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How a pipeline treats the first failed item: "off" or "on" by default (a run may say otherwise:
#: ``run.fail_fast``, ``--continue-on-error``), or "always" (an assembly cannot complete without
#: every chunk, so no run of it goes on after one failed).
FailFast = Literal["off", "on", "always"]


@dataclass(frozen=True)
class FlowSpec:
    """One Prefect flow of a pipeline and its deployments in ``deployments/prefect.yaml``."""

    name: str  # the flow's name: its deployments', runs' and tags' first word
    path: str  # "package.module:function", importable from the project root
    name_params: tuple[str, ...]  # the parameters its run names are made of (the first one given)
    deployments: tuple[str, ...]  # its deployments' names in prefect.yaml

    @property
    def entrypoint(self) -> str:
        """The flow as ``prefect.yaml`` spells it: ``flows/module.py:function``."""
        module, function = self.path.split(":")
        return f"{module.replace('.', '/')}.py:{function}"

    @property
    def function(self) -> str:
        return self.path.split(":")[1]


@dataclass(frozen=True)
class Pipeline:
    """One pipeline: its names and the settings where it differs from the others."""

    name: str  # the one name: salvo/<name>, the demo, the key in PIPELINES
    cli_module: str  # cli/<cli_module>.py registers its commands
    command: str  # `salvo <command>` runs its batch
    flows: tuple[FlowSpec, ...]  # the first is its batch flow; that flow's name keys its options and records
    timeout_s: float  # default per-item timeout, in seconds
    fail_fast: FailFast
    docs: str  # its page, from the project root
    aliases: tuple[str, ...] = ()  # the seeds' and earlier spellings it keeps (commands, flows)

    @property
    def flow_name(self) -> str:
        """The name its options, records, reports and run tags use: its batch flow's name."""
        return self.flows[0].name

    @property
    def demo(self) -> str:
        """Its demo: ``salvo demo --only NAME`` runs ``cli/demo_NAME.py``."""
        return self.name

    def flow(self, function: str) -> FlowSpec:
        """Its flow whose function is named ``function``."""
        return next(f for f in self.flows if f.function == function)


PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline(
            name="extract",
            cli_module="extract",
            command="extract",
            flows=(FlowSpec("netcdf-extract", "flows.netcdf_extract:netcdf_extract", ("directory",), ("nightly",)),),
            timeout_s=15 * 60.0,  # the seed's 15-minute limit per file
            fail_fast="off",
            docs="docs/extract.md",
            aliases=("netcdf-extract",),
        ),
        Pipeline(
            name="assembly",
            cli_module="assembly",
            command="assembly",
            flows=(
                FlowSpec("assembly-run", "flows.assembly:assembly_run", ("experiment",), ("nightly",)),
                FlowSpec("assembly-reassemble", "flows.assembly:assembly_reassemble", ("result_name",), ("default",)),
            ),
            timeout_s=15 * 60.0,
            fail_fast="always",
            docs="docs/assembly.md",
            aliases=("assembly-run", "assembly-reassemble"),
        ),
        Pipeline(
            name="subjects",
            cli_module="subjects",
            command="subjects",
            flows=(
                FlowSpec("subject-batch", "flows.subject_batch:subject_batch", ("manifest", "bids_dir"), ("default",)),
            ),
            timeout_s=120 * 60.0,  # the seed's 120 minutes per subject
            fail_fast="off",
            docs="docs/subjects.md",
            aliases=("subject-batch",),
        ),
        Pipeline(
            name="jobs",
            cli_module="jobs",
            command="jobs",
            flows=(FlowSpec("job-batch", "flows.job_batch:job_batch", ("output_dir",), ("default",)),),
            timeout_s=60 * 60.0,
            fail_fast="on",  # the seed stopped at the first failed job
            docs="docs/jobs.md",
            aliases=("job-batch", "batch"),  # `salvo batch`: the seed's builder_cli.py batch
        ),
        Pipeline(
            name="gridded",
            cli_module="salvage",
            command="recover",
            flows=(
                FlowSpec("salvage-merge", "flows.salvage_merge:salvage_merge", ("output",), ("default",)),
                FlowSpec("recover-batches", "flows.recover_batches:recover_batches", ("output",), ("batches",)),
            ),
            timeout_s=24 * 3600.0,  # one model run over the failed cells
            fail_fast="off",
            docs="docs/gridded.md",
            # `salvo salvage` and `salvo merge`: pyddt-salvage and pyddt-merge as subcommands
            aliases=("salvage-merge", "recover-batches", "salvage", "merge"),
        ),
    )
}


def pipeline(name: str) -> Pipeline:
    """The pipeline ``name`` is one of the names of: its name, command, a flow's name or an alias."""
    for p in PIPELINES.values():
        if name in (p.name, p.command, *p.aliases, *(f.name for f in p.flows)):
            return p
    raise KeyError(f"no pipeline is called {name!r} (known: {', '.join(PIPELINES)})")


def all_flows() -> list[FlowSpec]:
    """Every pipeline flow, in table order."""
    return [f for p in PIPELINES.values() for f in p.flows]
