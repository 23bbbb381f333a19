"""The ``probekit`` command: run, check, plugins, report. Every command is a thin caller of the Session."""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from probekit.engine.session import Session
from probekit.errors import ExitCode, ProbekitError, SpecError, UserError, exit_code_of
from probekit.hooks.manager import build_manager
from probekit.report.figures import write_figures
from probekit.report.terminal import render
from probekit.results.io import read_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probekit", description="What did fine-tuning change inside my transformer?")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, plugins: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if plugins:
            sub.add_argument("-p", "--plugin", action="append", default=[], metavar="PLUGIN",
                             help="load a plugin module (pkg.mod) or file (path/plugin.py), or block one (no:NAME); repeatable")
        return sub

    run = command("run", "run specs: fine-tune, probe, write results and a report")
    run.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    run.add_argument("-o", "--output", type=Path, help="the run folder to write (default reports/<spec>/<run id>)")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="where run folders go (default ./reports)")
    run.add_argument("--device", help="override [run] device (auto, cpu, cuda, cuda:N)")
    run.add_argument("--fresh", action="store_true", help="recompute even when identical earlier results exist")
    check = command("check", "validate specs without loading any model")
    check.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    command("plugins", "list plugins, the metrics and data sources they provide")
    report = command("report", "re-render the report and figures of a run from its Parquet file", plugins=False)
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    try:
        return int(COMMANDS[args.command](args, console))
    except KeyboardInterrupt:
        errors.print("interrupted", style="red")
        return ExitCode.INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place errors become exit codes
        if args.verbose:
            errors.print(traceback.format_exc(), markup=False, highlight=False)
        errors.print(format_error(error))
        return exit_code_of(error)


def format_error(error: BaseException) -> Text:
    if isinstance(error, UserError):
        return Text.assemble(("error: ", "bold red"), str(error))
    kind = "run failure" if isinstance(error, ProbekitError) else f"internal error ({type(error).__name__})"
    return Text.assemble((f"{kind}: ", "bold red"), str(error), ("\n(run with --verbose for the traceback)", "dim"))


def _session(args, console: Console, **kwargs) -> Session:
    return Session(plugins=args.plugin, console=console, verbose=args.verbose, **kwargs)


def cmd_run(args, console: Console) -> ExitCode:
    if args.output and len(args.specs) > 1:
        raise UserError("--output names one run folder: give it one spec")
    session = _session(args, console, overrides={"device": args.device} if args.device else None,
                       reports=args.reports, use_cache=not args.fresh)
    specs = [session.load(path)[0] for path in args.specs]  # every spec valid before any runs
    return max((session.run(spec, output=args.output).exit_code for spec in specs), default=ExitCode.OK)


def cmd_check(args, console: Console) -> ExitCode:
    session = _session(args, console)
    status = ExitCode.OK
    for path in args.specs:
        try:
            spec, _ = session.load(path)
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
    manager = build_manager(args.plugin, on_warning=lambda m: console.print(f"[yellow]warning[/] {m}", highlight=False))
    table = Table(title="probekit plugins")
    for column in ("plugin", "distribution", "version", "provides"):
        table.add_column(column, overflow="fold")
    for plugin in manager.plugins():
        provides = [*plugin.metrics, *(f"data: {kind}" for kind in plugin.sources)]
        table.add_row(plugin.name, plugin.origin.distribution, plugin.origin.version, ", ".join(provides) or "hooks")
    console.print(table)
    return ExitCode.OK


def cmd_report(args, console: Console) -> ExitCode:
    table = read_table(args.run_dir)
    render(table, console)
    run_dir = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
    written = write_figures(table, run_dir)
    console.print(f"figures: {len(written)} PNG files in {run_dir}")
    return ExitCode.OK


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins, "report": cmd_report}

if __name__ == "__main__":
    sys.exit(main())
