"""Declarations as typed data: one engine that builds a frozen dataclass from a TOML table.

Every spec section (``[run]``, ``[finetune]``), every expectation kind and every plugin's
``Options`` is a frozen dataclass; :func:`parse` validates a table against it and reports
every problem at once, each with its key path, what was found, what was expected and
one did-you-mean. A field's type says what a spec may give:

* ``bool``, ``int``, ``float`` (an int is accepted and converted), ``str``;
* ``Literal["a", "b"]`` (one of these values), ``X | None`` (None is the default only:
  TOML has no null), ``tuple[T, ...]`` (a TOML array, frozen);
* a nested dataclass (a TOML table), ``tuple[SomeDataclass, ...]`` (an array of tables);
* ``Annotated[T, rule, ...]``: :class:`Rule` constraints (:data:`positive`,
  :func:`between`, ...) checked after the type, and :class:`Convert` for values a spec
  writes in a language of their own (a size such as ``"8GiB"``).

Defaults are the dataclass's own: stated once. Sizes (:func:`parse_size`) live here too:
``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000 and ``KiB``, ``MiB``, ``GiB``, ``TiB``
powers of 1024, in a spec's ``memory`` and on the command line alike.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from probekit.errors import Problem, did_you_mean, type_name

SCALAR_TYPES = (bool, int, float, str)
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "a table"}


class Invalid(ValueError):
    """A value that has the right type but not an allowed value: ``expected`` says what is."""

    def __init__(self, expected: str, hint: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint in ``Annotated[T, Rule(...)]``: the value holds, or the problem says ``expected``."""

    holds: Callable[[Any], bool]
    expected: str
    suggest: tuple[Any, ...] = ()  # the names a did-you-mean picks from

    def __call__(self, value: Any) -> Any:
        if not self.holds(value):
            raise Invalid(self.expected, did_you_mean(value, self.suggest) if self.suggest else "")
        return value


@dataclasses.dataclass(frozen=True)
class Convert:
    """A value written in a language of its own: ``accepts`` is the TOML type, ``convert`` raises :class:`Invalid`."""

    accepts: Any
    convert: Callable[[Any], Any]
    expected: str


positive = Rule(lambda v: v > 0, "a positive number")
non_negative = Rule(lambda v: v >= 0, "a number >= 0")
non_empty = Rule(lambda v: bool(v.strip()) if isinstance(v, str) else bool(v), "a non-empty value")


def between(low: float, high: float, expected: str, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A number in [low, high] (an open end excluded): ``expected`` names the range for the reader."""
    return Rule(lambda v: (low < v if open_low else low <= v) and (v < high if open_high else v <= high), expected)


fraction = between(0, 1, "a fraction in [0, 1]")

# ------------------------------------------------------------------ types


def _strip(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[T, a, b]`` -> (T, (a, b)); anything else -> (it, ())."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return base, tuple(extras)
    return annotation, ()


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def describe_type(annotation: Any) -> str:
    """A reader's name for a type: 'an integer', 'one of "a", "b"', 'an array of a number'."""
    annotation, extras = _strip(annotation)
    rules = [e.expected for e in extras if isinstance(e, Rule | Convert)]
    if rules:
        return rules[-1]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if is_union(annotation):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return f"an array of {_PLURALS.get(item) or describe_type(item)}"
    if dataclasses.is_dataclass(annotation):
        return "a table"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def is_supported(annotation: Any) -> bool:
    """Whether a spec value can be checked against ``annotation`` (what plugin registration requires)."""
    annotation, extras = _strip(annotation)
    if any(isinstance(e, Convert) for e in extras):
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(v, SCALAR_TYPES) for v in typing.get_args(annotation))
    if is_union(annotation):
        return all(a is type(None) or is_supported(a) for a in typing.get_args(annotation))
    if origin is tuple:
        arguments = typing.get_args(annotation)
        return len(arguments) == 2 and arguments[1] is Ellipsis and is_supported(arguments[0])
    return annotation in SCALAR_TYPES or dataclasses.is_dataclass(annotation)


def fields_of(cls: type) -> dict[str, tuple[Any, Any]]:
    """Field name -> (type, default) of a declaration dataclass; ``dataclasses.MISSING`` where required."""
    hints = typing.get_type_hints(cls, include_extras=True)
    found = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("declared") is False:  # set by code, never by a spec
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        found[f.name] = (hints[f.name], default)
    return found


# ------------------------------------------------------------------ the engine


class _Reader:
    """Collects problems under a key path while values are checked."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems

    def problem(self, path: str, found: str, expected: str, hint: str = "") -> None:
        self.problems.append(Problem(path, found, expected, hint))

    def value(self, annotation: Any, raw: Any, path: str) -> Any:
        """``raw`` checked against ``annotation`` and converted; :data:`_BAD` after recording a problem."""
        annotation, extras = _strip(annotation)
        converter = next((e for e in extras if isinstance(e, Convert)), None)
        if converter is not None:
            if not _matches(converter.accepts, raw):
                self.problem(path, f"{type_name(raw)} {raw!r}", converter.expected)
                return _BAD
            try:
                return converter.convert(raw)
            except Invalid as invalid:
                self.problem(path, repr(raw), invalid.expected, invalid.hint)
                return _BAD
        rules = [e.expected for e in extras if isinstance(e, Rule)]
        value = self._typed(annotation, raw, path, rules[-1] if rules else "")
        if value is _BAD:
            return _BAD
        for rule in extras:
            try:
                value = rule(value)
            except Invalid as invalid:
                self.problem(path, repr(raw), invalid.expected, invalid.hint)
                return _BAD
        return value

    def _typed(self, annotation: Any, raw: Any, path: str, expected: str = "") -> Any:
        """``raw`` checked against a type without constraints; ``expected`` (a rule's words) names a mismatch."""
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            return _BAD if (built := self.table(annotation, raw, path)) is None else built
        if is_union(annotation):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            chosen = next((a for a in options if _matches(a, raw)), options[0] if len(options) == 1 else None)
            if chosen is None:
                self.problem(path, f"{type_name(raw)} {raw!r}", describe_type(annotation))
                return _BAD
            return self.value(chosen, raw, path)
        if origin is Literal:
            choices = typing.get_args(annotation)
            if raw in choices and _matches(type(raw), raw):
                return raw
            found = repr(raw) if isinstance(raw, str | int | float) else f"{type_name(raw)} {raw!r}"
            self.problem(path, found, describe_type(annotation), did_you_mean(raw, choices))
            return _BAD
        if origin is tuple:
            return self._array(typing.get_args(annotation)[0], raw, path)
        if not _matches(annotation, raw):
            self.problem(path, f"{type_name(raw)} {raw!r}", expected or describe_type(annotation))
            return _BAD
        return float(raw) if annotation is float else raw

    def _array(self, item: Any, raw: Any, path: str) -> Any:
        if not isinstance(raw, list | tuple):
            self.problem(path, f"{type_name(raw)} {raw!r}", f"an array of {describe_type(item)}")
            return _BAD
        tables = dataclasses.is_dataclass(_strip(item)[0])
        if not tables and not all(_matches(item, v) for v in raw):
            self.problem(path, repr(raw), describe_type(tuple[item, ...]))  # the array as written, not item by item
            return _BAD
        values = [self.value(item, v, f"{path}[{i}]" if tables else path) for i, v in enumerate(raw)]
        return _BAD if any(v is _BAD for v in values) else tuple(values)

    def table(self, cls: type, raw: Any, path: str, given: Mapping[str, Any] | None = None,
              known: tuple[str, ...] = ()) -> Any:
        """``cls`` built from the TOML table ``raw`` (``given``: fields set by the caller, not the table;
        ``known``: keys the caller reads itself)."""
        if not isinstance(raw, Mapping):
            self.problem(path, type_name(raw), "a table")
            return None
        declared = fields_of(cls)
        given = dict(given or {})
        readable = [name for name in declared if name not in given]
        before = len(self.problems)
        allowed = [*known, *(name for name in readable if name not in known)]
        for key in raw:
            if key not in allowed:
                self.problem(_join(path, key), "an unknown key", "one of " + ", ".join(allowed),
                             did_you_mean(key, allowed))
        values = dict(given)
        for name in readable:
            if name in known:
                continue
            annotation, default = declared[name]
            if name in raw:
                value = self.value(annotation, raw[name], _join(path, name))
                if value is not _BAD:
                    values[name] = value
            elif default is dataclasses.MISSING and not any(did_you_mean(k, [name]) for k in raw if k not in allowed):
                self.problem(_join(path, name), "nothing", describe_type(annotation))  # unless a typo of it is there
        if len(self.problems) > before:
            return None
        try:
            return cls(**values)
        except Invalid as invalid:  # an option's own check names the option (metrics.OptionError)
            option = getattr(invalid, "option", "")
            found = repr(values.get(option, declared[option][1])) if option in declared else "these values"
            self.problem(_join(path, option), found, invalid.expected, invalid.hint)
        except (TypeError, ValueError) as error:  # a __post_init__ may check how fields go together
            self.problem(path, str(error), "values that go together")
        return None


_BAD = object()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else (path or key)


def _matches(annotation: Any, value: Any) -> bool:
    """Whether a TOML value has the (scalar, union, literal, array) type ``annotation``; no rule applied."""
    annotation, _ = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if is_union(annotation):
        return any(_matches(a, value) for a in typing.get_args(annotation))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, list | tuple) and all(_matches(item, v) for v in value)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, Mapping)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def parse(cls: type, table: Any, path: str, problems: list[Problem], given: Mapping[str, Any] | None = None,
          known: tuple[str, ...] = ()) -> Any:
    """``cls`` built from a TOML table, every problem appended to ``problems`` under ``path``; None on a problem.

    ``given``: fields the caller sets (a name from the table's key), not read from the table; ``known``: keys
    the caller reads itself (accepted here, and named where an unknown key is reported).
    """
    return _Reader(problems).table(cls, table, path, given, known)


def parse_value(annotation: Any, raw: Any, path: str, problems: list[Problem]) -> Any:
    """One value checked against ``annotation``; None after appending its problem."""
    value = _Reader(problems).value(annotation, raw, path)
    return None if value is _BAD else value


# ------------------------------------------------------------------ sizes

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
SIZE_EXAMPLES = '"8GB" (8 x 10^9 bytes), "8GiB" (8 x 2^30), "512MB", "512MiB"'


def parse_size(text: str) -> int:
    """``"8GB"`` -> bytes: KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024; a bare number
    is bytes. :class:`Invalid` for anything else, or for no bytes at all."""
    match = _SIZE.match(text)
    if not match:
        raise Invalid(f"a size such as {SIZE_EXAMPLES}")
    unit = (match[2] or "").lower().rstrip("b")
    power = 1024 if unit.endswith("i") else 1000
    size = int(float(match[1]) * power ** _POWERS[unit.removesuffix("i")])
    if size <= 0:
        raise Invalid(f"a size above 0 bytes, such as {SIZE_EXAMPLES}")
    return size


def format_size(size: float) -> str:
    """Bytes in decimal units, as :func:`parse_size` reads them back: 1000 -> '1.0 kB', 8e9 -> '8.0 GB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


SIZE = Convert(str, parse_size, f"an amount of memory such as {SIZE_EXAMPLES}")
