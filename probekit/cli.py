"""The ``probekit`` command: run, check, plugins, report."""
from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text


class ExitCode(enum.IntEnum):
    OK = 0
    EXPECTATIONS_FAILED = 1
    BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probekit", description="What did fine-tuning change inside my transformer?")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_plugins(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("-p", "--plugin", action="append", default=[], metavar="PLUGIN",
                             help="load a plugin module (pkg.mod) or file (path/plugin.py), or block one (no:NAME); repeatable")
        return command

    run = with_plugins(commands.add_parser("run", help="run specs: fine-tune, probe, write results and a report"))
    run.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    run.add_argument("-o", "--output", type=Path, help="the run folder to write (default reports/<spec>/<run id>)")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="where run folders go (default ./reports)")
    run.add_argument("--device", help="override [run] device (auto, cpu, cuda, cuda:N)")
    check = with_plugins(commands.add_parser("check", help="validate specs without loading any model"))
    check.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    with_plugins(commands.add_parser("plugins", help="list plugins and the metrics they provide"))
    report = commands.add_parser("report", help="re-render the report and figures of a run from its Parquet file")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return int(COMMANDS[args.command](args, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return ExitCode.BAD_INPUT
    except Exception as error:
        if args.verbose or not _is_user_error(error):
            raise
        Console(stderr=True).print(format_error(error))
        return ExitCode.BAD_INPUT


def format_error(error: Exception) -> Text:
    return Text.assemble(("error: ", "bold red"), str(error))


def _is_user_error(error: Exception) -> bool:
    from probekit.capture import CaptureError
    from probekit.data import DataError
    from probekit.glue import GlueFormatError
    from probekit.models import ModelError
    from probekit.pluginmanager import PluginError
    from probekit.runner import RunError
    from probekit.spec import SpecError

    return isinstance(error, SpecError | PluginError | DataError | ModelError | RunError | GlueFormatError
                      | CaptureError | FileNotFoundError)


def _manager(args):
    from probekit.pluginmanager import default_manager

    return default_manager(args.plugin)


def _load(args, manager, overrides=None):
    from probekit.spec import load_spec

    return [load_spec(path, manager, overrides) for path in args.specs]


def cmd_run(args, console: Console) -> ExitCode:
    from probekit import figures, report
    from probekit.expect import evaluate, render_outcomes
    from probekit.runner import Runner

    manager = _manager(args)
    specs = _load(args, manager, {"device": args.device} if args.device else None)
    if args.output and len(specs) > 1:
        Console(stderr=True).print(format_error(ValueError("--output names one run folder: give it one spec")))
        return ExitCode.BAD_INPUT
    status = ExitCode.OK
    for spec in specs:
        result = Runner(spec, manager, Console(stderr=True)).run(output=args.output, reports_root=args.reports)
        report.render(result.table, console)
        written = figures.write_figures(result.table, result.run_dir)
        console.print(f"\nresults: {result.path}\nfigures: {len(written)} PNG files in {result.run_dir}")
        outcomes = evaluate(spec.expectations, result.table)
        render_outcomes(outcomes, console)
        if result.errors:
            status = max(status, ExitCode.BAD_INPUT)
        elif any(not outcome.passed for outcome in outcomes):
            status = max(status, ExitCode.EXPECTATIONS_FAILED)
    return status


def cmd_check(args, console: Console) -> ExitCode:
    manager = _manager(args)
    from probekit.spec import SpecError, load_spec

    status = ExitCode.OK
    for path in args.specs:
        try:
            spec = load_spec(path, manager)
        except SpecError as error:
            console.print(format_error(error))
            status = ExitCode.BAD_INPUT
            continue
        console.print(f"{path}: ok — {len(spec.models)} models, {len(spec.data)} data, "
                      f"{len(spec.comparisons)} comparisons, {len(spec.expectations)} expectations")
        for comparison in spec.comparisons:
            console.print(f"  {comparison.name}: {comparison.a} vs {comparison.b} on {comparison.data} "
                          f"[{', '.join(comparison.metrics)}]", markup=False)
    return status


def cmd_plugins(args, console: Console) -> ExitCode:
    manager = _manager(args)
    table = Table(title="probekit plugins")
    for column in ("plugin", "distribution", "version", "metrics"):
        table.add_column(column, overflow="fold")
    for plugin in manager.plugins():
        table.add_row(plugin.name, plugin.distribution, plugin.version, ", ".join(plugin.metrics))
    console.print(table)
    return ExitCode.OK


def cmd_report(args, console: Console) -> ExitCode:
    from probekit import figures, report
    from probekit.results import read_table

    table = read_table(args.run_dir)
    report.render(table, console)
    run_dir = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
    written = figures.write_figures(table, run_dir)
    console.print(f"figures: {len(written)} PNG files in {run_dir}")
    return ExitCode.OK


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins, "report": cmd_report}

if __name__ == "__main__":
    sys.exit(main())
