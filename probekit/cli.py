"""The ``probekit`` command: run, check, plugins, report, ls, diff. Running commands are thin callers of the Session.

Each command imports what it uses when it runs: ``probekit --help``, ``ls``, ``diff``, ``report`` and
``cache`` never import torch (about 5 s of a cold start); ``run`` and ``check`` load the plugins, whose
metrics do.
"""
from __future__ import annotations

import argparse
import sys
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from probekit.errors import ExitCode, ProbekitError, SpecError, UserError, broken_import, exit_code_of
from probekit.say import say

if TYPE_CHECKING:
    from probekit.report.html import Verdict


def build_parser() -> argparse.ArgumentParser:
    from probekit.spec.model import TRACKERS  # the choices of --log (the spec's names for the trackers)

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
    run.add_argument("specs", nargs="*", type=Path, metavar="SPEC")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run in its folder: keep its finished comparisons, probe the others "
                          "(SPEC defaults to the spec file the run recorded)")
    run.add_argument("-o", "--output", type=Path, help="the run folder to write (default reports/spec_name=<spec>/run=<run id>)")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="where run folders go (default ./reports)")
    run.add_argument("--device", help="override [run] device (auto, cpu, cuda, cuda:N)")
    _set_option(run)
    run.add_argument("--fresh", action="store_true", help="recompute even when identical earlier results exist")
    run.add_argument("--executor", choices=("local", "ray"),
                     help="who runs the fine-tunes and probes: this process (local, the default) or a Ray cluster "
                          "(ray: pip install 'probekit[ray]'; docs/scale-out.md); overrides [run] executor")
    run.add_argument("--ray-address", metavar="ADDRESS",
                     help="the Ray cluster to run on (host:port, ray://host:10001, auto); implies --executor ray; "
                          "default [run] ray_address, else $RAY_ADDRESS, else a local Ray started for the run")
    run.add_argument("--overwrite", action="store_true",
                     help="write into a non-empty -o folder that is not an earlier run of the spec "
                          "(replaces results.parquet, verdict.json, report.html and *.png there, nothing else)")
    run.add_argument("--log", action="append", default=[], choices=TRACKERS, metavar="TRACKER",
                     help="also log the run to an experiment tracker: wandb or mlflow (pip install 'probekit[wandb]' "
                          "or 'probekit[mlflow]'; docs/results.md); repeatable; adds to [run] log")
    _set_option(command("check", "validate specs without loading any model"), specs_required=True)
    command("plugins", "list plugins, the metrics, data sources and expectation kinds they provide")
    report = command("report", "re-render the report and figures of a run from its Parquet file", plugins=False)
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--html", action="store_true",
                        help="write the run's report.html (self-contained, opens offline) instead of the terminal report")
    ls = command("ls", "list earlier runs: spec, run id, date, complete or not, models, expectations passed", plugins=False)
    ls.add_argument("spec", nargs="?", metavar="SPEC", help="only the runs of this spec (its name or its file)")
    ls.add_argument("--reports", type=Path, default=Path("reports"), help="where run folders are (default ./reports)")
    diff = command("diff", "compare two runs layer by layer; exit 1 when a value changed beyond the tolerance",
                   plugins=False)
    diff.add_argument("run_a", metavar="RUN_A", help="a run folder, its results.parquet, or a run id under --reports")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.add_argument("--reports", type=Path, default=Path("reports"), help="where run ids are looked up (default ./reports)")
    diff.add_argument("--tolerance", type=float, default=1e-6, help="the largest change that is not a drift (default 1e-6)")
    diff.add_argument("--relative", action="store_true", help="the tolerance is relative to the larger magnitude of the two")
    diff.add_argument("--heads", action="store_true", help="compare per-head values too, not only the layers' values")
    diff.add_argument("--changed", action="store_true", help="show only the values that changed beyond the tolerance")
    diff.add_argument("--html", nargs="?", type=Path, const=Path("diff.html"), metavar="FILE",
                      help="also write the two runs side by side as a self-contained page (default ./diff.html)")
    cache = command("cache", "the checkpoint and results cache: ls, verify, prune", plugins=False)
    actions = cache.add_subparsers(dest="action", required=True)
    for action, text in (("ls", "list cached fine-tunes and results: what each is, its size, when last used"),
                         ("verify", "check every cached fine-tune against its manifest; exit 1 when one is corrupt"),
                         ("prune", "remove leftovers, and entries by age (--older-than) or total size (--max-size)")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--cache", type=Path, metavar="DIR", help="the cache folder (default $PROBEKIT_CACHE, else ~/.cache/probekit)")
        if action == "prune":
            sub.add_argument("--older-than", metavar="AGE", help="remove entries last used longer ago than AGE (30d, 12h, 2w)")
            sub.add_argument("--max-size", metavar="SIZE", help="then remove the oldest entries until the cache holds at most SIZE (5GB, 5GiB: docs/specs.md)")
            sub.add_argument("--dry-run", action="store_true", help="show what would be removed, remove nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from probekit.report.terminal import output_width

    console = Console(width=output_width(sys.stdout))  # not wrapped at 80 columns when piped or logged
    errors = Console(stderr=True, width=output_width(sys.stderr))
    try:
        return int(COMMANDS[args.command](args, console))
    except KeyboardInterrupt:
        errors.print("interrupted", style="red")
        return ExitCode.INTERRUPTED
    except ImportError as error:  # the model stack (torch, transformers) broken by another package's build
        if args.verbose:
            errors.print(traceback.format_exc(), markup=False, highlight=False)
        errors.print(format_error(broken_import(error)))
        return ExitCode.BAD_INPUT
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


def _set_option(parser: argparse.ArgumentParser, specs_required: bool = False) -> None:
    if specs_required:  # `probekit check SPEC...`
        parser.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override one spec key for this command, validated like the file: --set finetune.lr=2e-5, "
                             "--set run.batch_size=16 (a TOML value, else a string); repeatable")


def _overrides(args) -> dict[str, object] | None:
    """--device and each --set KEY=VALUE as the spec keys they override (docs/specs.md, "Composing specs")."""
    from probekit.spec.include import set_value

    overrides: dict[str, object] = {"run.device": args.device} if getattr(args, "device", None) else {}
    for item in getattr(args, "sets", []):
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not all(part.strip() for part in key.split(".")):
            raise UserError(f"--set {item!r}: expected KEY=VALUE with a spec key path, e.g. --set finetune.lr=2e-5")
        overrides[key.strip()] = set_value(value.strip())
    return overrides or None


def _session(args, console: Console, **kwargs):
    from probekit.engine.session import Session

    return Session(plugins=args.plugin, console=console, verbose=args.verbose, overrides=_overrides(args), **kwargs)


def cmd_cache(args, console: Console) -> ExitCode:
    from probekit.engine import cache_admin
    from probekit.models.cachedir import cache_root

    root = args.cache or cache_root()
    if args.cache is not None and not args.cache.is_dir():  # a typo'd --cache is not an empty cache
        what = "is a file, not a folder" if args.cache.exists() else "no such folder"
        raise UserError(f"--cache {args.cache}: {what}; give probekit's cache folder (default $PROBEKIT_CACHE, "
                        f"else ~/.cache/probekit: here {cache_root()})")
    if args.action == "ls":
        return cache_admin.run_ls(root, console)
    if args.action == "verify":
        return cache_admin.run_verify(root, console)
    return cache_admin.run_prune(root, console, older_than=args.older_than, max_size=args.max_size, dry_run=args.dry_run)


def cmd_run(args, console: Console) -> ExitCode:
    if args.resume:
        return cmd_resume(args, console)
    if not args.specs:
        raise UserError("probekit run: give a SPEC to run (or --resume RUN_DIR to continue an interrupted run)")
    if args.output and len(args.specs) > 1:
        raise UserError("--output names one run folder: give it one spec")
    session = _session(args, console, reports=args.reports, use_cache=not args.fresh, overwrite=args.overwrite,
                       log=args.log,
                       **_executor(args))
    specs = [session.load(path)[0] for path in args.specs]  # every spec valid before any runs
    for spec in specs:  # and every output writable, nothing clobbered
        session.check_output(spec, args.output)
    return max((session.run(spec, output=args.output).exit_code for spec in specs), default=ExitCode.OK)


def cmd_resume(args, console: Console) -> ExitCode:
    if args.output or len(args.specs) > 1:
        raise UserError(f"--resume {args.resume} writes into that run folder: give it at most one SPEC, and no -o")
    if args.fresh:
        raise UserError(f"--resume {args.resume} --fresh: a resumed run keeps the comparisons it finished, --fresh "
                        "recomputes everything; to recompute, run the spec again without --resume (a new run folder)")
    session = _session(args, console, reports=args.reports, log=args.log, **_executor(args))
    return session.resume(args.resume, args.specs[0] if args.specs else None).exit_code


def _executor(args) -> dict:
    """--executor and --ray-address as Session arguments: an address alone means Ray."""
    return {"executor": args.executor or ("ray" if args.ray_address else None), "ray_address": args.ray_address}


def cmd_check(args, console: Console) -> ExitCode:
    session = _session(args, console)
    status = ExitCode.OK
    for path in args.specs:
        try:
            spec, _ = session.load(path)
        except SpecError as error:
            console.print(format_error(error))  # a Text: printed as it is, never read as markup
            status = ExitCode.BAD_INPUT
            continue
        say(console, f"{path}: ok — {len(spec.models)} models, {len(spec.data)} data, "
                     f"{len(spec.comparisons)} comparisons, {len(spec.expectations)} expectations")
        for note in spec.notes:
            say(console, f"{path}: {note}", label="note")
        for comparison in spec.comparisons:
            say(console, f"  {comparison.name}: {comparison.a} vs {comparison.b} on {comparison.data} "
                         f"[{', '.join(comparison.metrics)}]")
    return status


def cmd_plugins(args, console: Console) -> ExitCode:
    from probekit.hooks.manager import build_manager

    manager = build_manager(args.plugin, on_warning=lambda m: say(console, m, label="warning"))
    table = Table(title="probekit plugins")
    for column in ("plugin", "distribution", "version", "provides"):
        table.add_column(column, overflow="fold")
    for plugin in manager.plugins():
        provides = [*plugin.metrics, *(f"data: {kind}" for kind in plugin.sources),
                    *(f"expect: {kind}" for kind in plugin.expectations)]
        table.add_row(plugin.name, plugin.origin.distribution, plugin.origin.version, ", ".join(provides) or "hooks")
    console.print(table)
    return ExitCode.OK


def cmd_report(args, console: Console) -> ExitCode:
    from probekit.report.figures import write_figures
    from probekit.report.html import write_report
    from probekit.report.terminal import render
    from probekit.results.io import read_table

    table = read_table(args.run_dir)
    run_dir = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
    if args.html:
        path = write_report(table, run_dir, judged_again(table, run_dir, console))
        console.print(f"report: {path}", markup=False, highlight=False, soft_wrap=True)
        return ExitCode.OK
    render(table, console)
    written = write_figures(table, run_dir)
    say(console, f"figures: {len(written)} PNG files in {run_dir}")
    return ExitCode.OK


def judged_again(table, run_dir: Path, console: Console) -> tuple[Verdict, ...] | None:
    """The run's expectations judged again from the spec text its results file holds; where that text no longer
    validates (a data file moved), the verdict.json beside it (names and reasons, no values); else None."""
    from probekit.engine.session import Session
    from probekit.expect.evaluate import evaluate
    from probekit.report.html import verdicts_from_outcomes, verdicts_from_record
    from probekit.results.history import read_verdict
    from probekit.results.io import metadata

    meta = metadata(table)
    text = meta.get("spec_text")
    if text:
        try:
            spec, _ = Session(console=console).load(Path(meta.get("spec_path") or "spec.toml"), tomllib.loads(text), text)
        except (UserError, tomllib.TOMLDecodeError) as error:
            console.print(f"note: the expectations are shown from verdict.json: the recorded spec does not validate "
                          f"now ({str(error).splitlines()[0]})", markup=False, highlight=False, soft_wrap=True)
        else:
            return verdicts_from_outcomes(evaluate(spec.expectations, table))
    record = read_verdict(run_dir)
    return verdicts_from_record(record) if record is not None else None


def cmd_ls(args, console: Console) -> ExitCode:
    from probekit.results.history import find_runs

    spec = args.spec
    if spec is not None and (Path(spec).is_file() or spec.endswith(".toml")):
        from probekit.spec.load import read_spec  # spec/ reaches the model stack: only for a spec file

        _, document = read_spec(Path(spec))  # a SpecError (exit 2) when it cannot be read
        spec = document.get("name") if isinstance(document.get("name"), str) else Path(spec).stem
    runs, unreadable = find_runs(args.reports, spec)
    for problem in unreadable:
        say(console, problem, label="skipped")
    if not runs:
        others = sorted({r.spec for r in find_runs(args.reports)[0]}) if spec is not None else []
        console.print(f"no runs{f' of spec {spec!r}' if spec is not None else ''} under {args.reports}"
                      + (f" (specs with runs: {', '.join(others)})" if others else ""), markup=False, highlight=False)
        return ExitCode.OK
    table = Table(title=f"runs under {args.reports}" + (f" of spec {spec}" if spec is not None else ""))
    for column in ("spec", "run id", "date (UTC)", "status", "models", "expectations", "folder"):
        table.add_column(column, overflow="fold")
    for run in runs:
        status = Text(run.status, style="green" if run.complete else "yellow")
        verdict = Text(run.verdict, style="red" if (run.passed or 0) < (run.expectations or 0) else "")
        table.add_row(run.spec, run.run_id, run.date, status, ", ".join(run.models), verdict, str(run.run_dir))
    console.print(table)
    return ExitCode.OK


def cmd_diff(args, console: Console) -> ExitCode:
    from probekit.report.html import diff_page
    from probekit.results.history import diff_tables, read_record, resolve_run
    from probekit.results.io import read_table

    paths = [resolve_run(given, args.reports) for given in (args.run_a, args.run_b)]
    tables = [read_table(path) for path in paths]
    records = [read_record(path) for path in paths]
    if records[0].spec != records[1].spec:  # said first: whatever follows compares two different experiments
        say(console, f"A and B are runs of two different specs: A of {records[0].spec!r}, B of {records[1].spec!r}; "
                     "only the comparisons and metrics both have are compared", style="yellow")
    for label, run in zip("AB", records, strict=True):
        console.print(f"{label}: {run.spec} run {run.run_id} ({run.date}, {run.status}) {run.run_dir}",
                      markup=False, highlight=False, soft_wrap=True)
    diff = diff_tables(*tables, tolerance=args.tolerance, relative=args.relative, heads=args.heads)
    if args.html:
        titles = [f"run {run.run_id} ({run.date}, {run.status}) {run.run_dir}" for run in records]
        args.html.write_text(diff_page(tables, titles, diff), encoding="utf-8")
        console.print(f"side by side: {args.html}", markup=False, highlight=False, soft_wrap=True)
    kind = "relative" if diff.relative else "absolute"
    table = Table(title=f"B - A per layer, tolerance {diff.tolerance:g} ({kind})")
    for column in ("comparison", "metric", "layer", *(["head"] if args.heads else []), "A", "B", "delta", ""):
        table.add_column(column, justify="right" if column in ("layer", "head", "A", "B", "delta") else "left",
                         overflow="fold")
    for row in diff.changed if args.changed else diff.rows:
        delta = row.delta
        cells = [row.comparison, row.metric, str(row.layer), *([_cell(row.head, "d")] if args.heads else []),
                 _cell(row.a), _cell(row.b), _cell(delta, "+.3g")]
        table.add_row(*cells, Text("changed", style="bold red") if row.exceeds else "",
                      style="red" if row.exceeds else None)
    if table.row_count:
        console.print(table)
    for label, pairs in (("A", diff.only_a), ("B", diff.only_b)):
        if pairs:
            console.print(f"only in {label} (not compared): " + ", ".join(f"{c} / {m}" for c, m in pairs),
                          markup=False, highlight=False, soft_wrap=True)
    largest = diff.largest()
    if largest is None:
        console.print(f"no change beyond {diff.tolerance:g} ({kind}) in {len(diff.rows)} values", style="green")
        return ExitCode.OK
    where = f"{largest.comparison} / {largest.metric} layer {largest.layer}" + (
        f" head {largest.head}" if largest.head is not None else "")
    console.print(f"{len(diff.changed)} of {len(diff.rows)} values changed beyond {diff.tolerance:g} ({kind}); "
                  f"the largest: {where} ({_cell(largest.delta, '+.3g')})", style="red", markup=False, highlight=False,
                  soft_wrap=True)
    return ExitCode.EXPECTATIONS_FAILED


def _cell(value: float | int | None, spec: str = ".6g") -> str:
    return "—" if value is None else format(value, spec)


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins, "report": cmd_report, "ls": cmd_ls,
            "diff": cmd_diff, "cache": cmd_cache}

if __name__ == "__main__":
    sys.exit(main())
