"""The pytest plugin (entry point ``pytest11``): collects specs with ``[[expect]]``.

``pytest specs/`` (or ``pytest specs/finetune.toml``) collects every probekit spec
that has expectations as a file and each expectation as a test item named after
it. A spec runs once per session, however many of its items are selected, and
its results are cached across sessions (see :func:`probekit.api.run`). TOML files
that are not probekit specs (pyproject.toml, ...) are left alone.

Also provides fixtures: ``tiny_tokenizer``, ``tiny_model_pair``, ``tiny_batches``
for metric plugin authors, and ``probekit_run`` (``api.run`` sharing this
session's results).

This module loads in every pytest session: it imports nothing heavy at import
time (probekit, torch and transformers load only when a spec is collected or a
fixture is used).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

MAX_SPEC_BYTES = 2_000_000
_STATE = pytest.StashKey["_SessionState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("probekit", "probekit specs with [[expect]]")
    group.addoption("--probekit-no-cache", action="store_true", default=False,
                    help="run specs afresh instead of reusing cached results (and store nothing)")
    group.addoption("--probekit-reports", metavar="DIR", default=None,
                    help="where run folders go (default: <rootdir>/reports)")
    group.addoption("--probekit-plugin", action="append", default=[], metavar="PLUGIN",
                    help="load a probekit plugin module or .py file, as `probekit -p` does; repeatable")
    group.addoption("--probekit-device", metavar="DEVICE", default=None,
                    help="override the specs' [run] device (auto, cpu, cuda, cuda:N)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = _SessionState(config)
    config.addinivalue_line("markers", "probekit: an [[expect]] expectation of a probekit spec")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix == ".toml" and is_probekit_spec(file_path):
        return SpecFile.from_parent(parent, path=file_path)
    return None


def is_probekit_spec(path: Path) -> bool:
    """A TOML file with ``[[comparisons]]`` and ``[[expect]]`` tables (cheap: no probekit import).

    A file that reads like a spec but is not valid TOML is collected too, so its
    error shows instead of the file silently disappearing from the run.
    """
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "expect" not in text or "comparisons" not in text:
        return False
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "[[expect]]" in text and "[[comparisons]]" in text
    comparisons, expect = document.get("comparisons"), document.get("expect")
    return isinstance(comparisons, list) and isinstance(expect, list) and bool(expect)


class _SessionState:
    """This session's runs: each spec file runs once, whatever number of its items is selected."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs: dict[Path, Any] = {}  # spec path -> Results, or the exception its run raised
        self.api_runs: dict[tuple, Any] = {}  # the probekit_run fixture's runs
        self._session = None

    def option(self, name: str):
        return self.config.getoption(name)

    @property
    def reports(self) -> Path:
        chosen = self.option("probekit_reports")
        return Path(chosen) if chosen else self.config.rootpath / "reports"

    def overrides(self) -> dict[str, str]:
        device = self.option("probekit_device")
        return {"run.device": device} if device else {}

    @property
    def session(self):
        """One probekit Session for this pytest session: the same validation, cache and outputs as `probekit run`."""
        if self._session is None:
            from probekit.engine.session import Session

            self._session = Session(plugins=self.option("probekit_plugin"), overrides=self.overrides(),
                                    reports=self.reports, use_cache=not self.option("probekit_no_cache"))
        return self._session

    def results(self, spec_file: SpecFile):
        """The spec's run: done now, or taken from this session or the results cache."""
        key = spec_file.path
        if key not in self.runs:
            try:
                self.runs[key] = self.session.run(spec_file.spec)
            except Exception as error:  # noqa: BLE001 - kept and shown by every item of the spec
                self.runs[key] = error
        outcome = self.runs[key]
        if isinstance(outcome, Exception):
            raise SpecRunFailed(spec_file.path, outcome) from outcome
        return outcome


class SpecRunFailed(Exception):
    """The spec validated but could not run; every item of it fails with this."""

    def __init__(self, path: Path, error: Exception) -> None:
        self.path = path
        self.error = error
        super().__init__(f"{path}: the spec could not run: {error}")


class SpecFile(pytest.File):
    """A probekit spec; its items are its expectations."""

    spec = None

    def collect(self):
        from probekit.errors import UserError

        state: _SessionState = self.config.stash[_STATE]
        try:
            self.spec, _ = state.session.load(self.path)
        except UserError as error:
            raise self.CollectError(f"probekit spec {error}") from None
        lines = _expect_lines(self.spec.text)
        for expectation in self.spec.expectations:
            item = ExpectationItem.from_parent(self, name=expectation.name, expectation=expectation,
                                               line=lines.get(expectation.key))
            for marker in self.spec.markers:  # e.g. markers = ["slow"]: `pytest -m "not slow"` skips them
                item.add_marker(marker)
            yield item


def _expect_lines(text: str) -> dict[str, int]:
    """expect[i] -> the 0-based line of its ``[[expect]]`` header, when the spec writes them that way."""
    headers = [number for number, line in enumerate(text.splitlines()) if line.strip().startswith("[[expect]]")]
    return {f"expect[{i}]": line for i, line in enumerate(headers)} if headers else {}


class ExpectationItem(pytest.Item):
    """One ``[[expect]]`` of a spec; running it runs the spec once per session, then checks."""

    def __init__(self, *, expectation, line: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.expectation = expectation
        self.line = line
        self.add_marker("probekit")
        self.extra_keyword_matches.update(expectation.keywords())

    def runtest(self) -> None:
        from probekit.expect.evaluate import evaluate
        from probekit.testing import ExpectationFailed

        state: _SessionState = self.config.stash[_STATE]
        results = state.results(self.parent)
        outcome = evaluate([self.expectation], results.table)[0]
        if not outcome.passed:
            raise ExpectationFailed(outcome, results.run_dir, where=f"{self.expectation.key} of {self.path.name}")

    def repr_failure(self, excinfo, style=None):
        from probekit.testing import ExpectationFailed

        if isinstance(excinfo.value, ExpectationFailed):
            return str(excinfo.value)
        from probekit.errors import is_user_error

        if isinstance(excinfo.value, SpecRunFailed) and is_user_error(excinfo.value.error):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        # The failure header shows this; it must not be a suffix of the node id, or `-v` turns its dots into '::'.
        return self.path, self.line, f"{self.path.name}: {self.name}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    runs = {path: r for path, r in state.runs.items() if not isinstance(r, Exception)} if state else {}
    if not runs:
        return
    terminalreporter.section("probekit")
    for path, results in runs.items():
        status = "cached results" if results.cached else "ran"
        terminalreporter.write_line(f"{path.name}: {status}, run folder {results.run_dir}")


def pytest_assertrepr_compare(config, op: str, left, right):
    """Explain a failed ``==`` between layer series (probekit.api.LayerSeries) layer by layer."""
    def is_series(value) -> bool:
        return type(value).__name__ == "LayerSeries" and type(value).__module__ == "probekit.api"

    if op != "==" or not (is_series(left) or is_series(right)):
        return None
    if not all(hasattr(side, "keys") for side in (left, right)):
        return None
    layers = sorted(set(left.keys()) | set(right.keys()))
    lines = [f"layer series differ: {left!r} != {right!r}", "layer  left  right  difference"]
    for layer in layers:
        a, b = left.get(layer), right.get(layer)
        difference = "" if a is None or b is None else f"{a - b:+.3g}"
        marker = "" if a == b else "  <--"
        lines.append(f"{layer}  {'-' if a is None else f'{a:.6g}'}  {'-' if b is None else f'{b:.6g}'}  {difference}{marker}")
    return lines


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A word-level BERT-style tokenizer over a few dozen words (built offline)."""
    from probekit.testing.fixtures import tiny_tokenizer as make

    return make()


@pytest.fixture
def tiny_model_pair(tiny_tokenizer):
    """Two tiny random BERT encoders (hidden 32, 2 layers, 2 heads, eager) as probekit LoadedModels."""
    from probekit.testing.fixtures import tiny_model_pair as make

    return make(0, 1, tokenizer=tiny_tokenizer)


@pytest.fixture
def tiny_batches(tiny_tokenizer):
    """Three batches of 16 short examples (~350 real tokens), tokenized with ``tiny_tokenizer``."""
    from probekit.testing.fixtures import tiny_batches as make

    return make(tiny_tokenizer)


@pytest.fixture
def probekit_run(pytestconfig):
    """``probekit.api.run``, with results shared across this session and the results cache."""
    state: _SessionState = pytestconfig.stash[_STATE]

    def run(spec, **kwargs):
        from probekit import api

        kwargs.setdefault("use_cache", not state.option("probekit_no_cache"))
        kwargs.setdefault("reports", state.reports)
        key = ("api", str(Path(spec).resolve()) if isinstance(spec, str | Path) else repr(sorted(spec.items())),
               repr(sorted(kwargs.items())))
        if key not in state.api_runs:
            state.api_runs[key] = api.run(spec, **kwargs)
        return state.api_runs[key]

    return run
