"""The ``hf`` data source: a split of a Hugging Face dataset, loaded with ``datasets.load_dataset``.

Integer labels of a ``ClassLabel`` column become their class names. Loading needs
the internet or the ``datasets`` cache (with ``HF_DATASETS_OFFLINE=1``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import probekit
from probekit.sources import Columns, rows_to_examples


class HfSource(probekit.DataSource):
    """``hf = "imdb"``, optional ``config``, ``split = "train"`` and the ``text``/``text_pair``/``label`` columns."""

    kind = "hf"
    description = "a split of a Hugging Face dataset (needs the internet or the datasets cache)"

    @dataclass(frozen=True)
    class Options:
        hf: str
        config: str | None = None
        split: str = "train"
        text: str = "text"
        text_pair: str | None = None
        label: str = "label"

    def validate(self, options, base_dir: Path):
        if not options.hf:
            return options, [probekit.Problem("hf", repr(options.hf), "the name of a Hugging Face dataset")]
        return options, []

    def load(self, options, where: str) -> list[probekit.Example]:
        dataset = _load_split(options, where)
        feature = dataset.features.get(options.label)
        names = getattr(feature, "names", None)
        if names is not None and -1 in dataset.unique(options.label):
            # names[-1] would silently give unlabelled rows the last class.
            raise probekit.DataError(f"{where}: split {options.split!r} has unlabelled rows (label -1)")
        columns = Columns(text=options.text, text_pair=options.text_pair, label=options.label)
        return rows_to_examples(dataset.column_names, dataset, columns, where, names)

    def fingerprint(self, options) -> str:
        try:
            content = _load_split(options, "")._fingerprint
        except probekit.DataError:
            content = "\x1f".join(("unloaded", options.hf, str(options.config), options.split))
        return _digest(content, options.text, str(options.text_pair), options.label)


def _load_split(options, where: str):
    try:
        import datasets

        return datasets.load_dataset(options.hf, options.config, split=options.split)
    except Exception as error:  # noqa: BLE001 - datasets raises many unrelated types for a bad name, config or split
        name = options.hf if options.config is None else f"{options.hf} ({options.config})"
        raise probekit.DataError(
            f"{where}: cannot load split {options.split!r} of Hugging Face dataset {name!r}: {error}"
        ) from error


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


@probekit.hookimpl
def probekit_register_sources(register):
    register(HfSource)
