"""The `salvo` command: one subcommand per pipeline, with the seeds' flags."""

from __future__ import annotations

import argparse
import importlib
import sys

from salvo.errors import UsageError
from salvo.pipelines import PIPELINES

#: Commands that are not a pipeline's: storage, deployments, the server, notifications, demo, history.
TOOLS = ["blocks", "deploy", "server", "notify", "demo", "history"]
#: Subcommand modules, each with `register(subparsers)`: each pipeline's (from the table), then the tools.
COMMANDS = [*(p.cli_module for p in PIPELINES.values()), *TOOLS]


def _prefect_defaults() -> None:
    """Before Prefect is imported: the environment defaults (no telemetry on a closed network, time
    for a first start of the embedded API on a busy machine: `deployments.prefect_patches`), and on
    the first ``import prefect`` the user's PREFECT_API_URL (checked), else the local server (started
    if needed), else the temporary API; and this command's processes tied to its life."""
    from cli.server import install_hook
    from deployments.prefect_patches import set_environment_defaults

    set_environment_defaults()
    install_hook()


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit 2, not a page of usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse tree of every subcommand, or only of ``command`` (one of `COMMANDS`).

    `main` builds only the command it runs: importing every command's module (pandas for `jobs`,
    and so on) cost every `salvo` command about a second before it started.
    """
    from salvo import __version__

    parser = OneLineErrorParser(prog="salvo", description="Batch pipelines that finish, resume and recover.")
    parser.add_argument("--version", action="version", version=f"salvo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if command not in COMMANDS else [command]:
        importlib.import_module(f"cli.{name}").register(sub)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word not starting with ``-``), if it is one of `COMMANDS`."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `salvo`; returns the exit code."""
    _prefect_defaults()
    from cli.common import CliError, fail

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    from cli.common import set_output

    set_output(args)
    if not getattr(args, "verbose", False):
        # Dask's own INFO lines (scheduler, workers, client) only with --verbose.
        import logging

        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from salvo.report import set_command_line

    set_command_line(["salvo", *argv])  # the run report's header shows it
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        return fail(str(exc))
    except CliError as exc:
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("\nInterrupted: finished items are kept; run the same command again to resume.", file=sys.stderr)
        return 130
    finally:
        set_command_line([])  # a later run in this process (a test, a server) is not this command


if __name__ == "__main__":
    sys.exit(main())
