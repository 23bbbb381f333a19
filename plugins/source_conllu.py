"""The ``conllu`` data source: sentences of a Universal Dependencies (CoNLL-U) file, tagged word by word.

Each sentence becomes one example whose words are its surface tokens and whose word
tags are one column of the file: ``tag = "upos"`` (the default), ``"xpos"`` or
``"deprel"`` (each word's relation to its head). As UD defines them, a multi-word token
(``1-2  du``, whose syntactic words ``de`` and ``le`` are lines 1 and 2) is one surface
word of the text, tagged with its words' tags joined by ``+`` (``ADP+DET``), and empty
nodes (``8.1``, enhanced dependencies only) are not surface words and are skipped. The
text is the surface tokens joined by a space unless a token's MISC says
``SpaceAfter=No``. The ``conllu`` package parses each sentence once this source has
checked its lines, so a malformed line is reported with its number.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import conllu

import probekit
from probekit.sources import resolve_path

#: A CoNLL-U ID: a word (``3``), a multi-word token's range (``1-2``) or an empty node (``8.1``).
_ID = re.compile(r"[1-9]\d*(?:-[1-9]\d*|\.[1-9]\d*)?")
_FIELDS = 10


class ConlluSource(probekit.DataSource):
    """``conllu = "en_ewt-ud-dev.conllu"`` (relative to the spec's folder), ``tag = "upos" | "xpos" | "deprel"``."""

    kind = "conllu"
    description = "a Universal Dependencies .conllu file: one example per sentence, words tagged by UPOS, XPOS or DEPREL"

    @dataclass(frozen=True)
    class Options:
        conllu: str
        tag: Literal["upos", "xpos", "deprel"] = "upos"

    def validate(self, options, base_dir: Path):
        file = resolve_path(options.conllu, base_dir)
        if not file.is_file():
            return options, [probekit.Problem("conllu", repr(options.conllu), f"an existing .conllu file ({file} is not a file)")]
        return replace(options, conllu=str(file)), []

    def load(self, options, where: str) -> list[probekit.Example]:
        path = Path(options.conllu)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise probekit.DataError(f"{where} ({path}): cannot read it: {error}") from error
        examples = [_example(block, first_line, options.tag, f"{where} ({path})")
                    for block, first_line in _sentence_blocks(text, f"{where} ({path})")]
        if not examples:
            raise probekit.DataError(f"{where} ({path}): no sentences; expected CoNLL-U sentences separated by blank lines")
        return examples

    def fingerprint(self, options) -> str:
        file = Path(options.conllu)
        content = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else "missing"
        return hashlib.sha256(f"{content}\x1f{options.tag}".encode()).hexdigest()[:20]


def _sentence_blocks(text: str, where: str) -> list[tuple[str, int]]:
    """The file's sentences as (lines, number of the first line), each token line checked."""
    blocks, lines, first = [], [], 1
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if lines:
                blocks.append(("\n".join(lines) + "\n\n", first))
            lines = []
            continue
        if not lines:
            first = number
        if not line.startswith("#"):
            _check_line(line, number, where)
        lines.append(line)
    if lines:
        blocks.append(("\n".join(lines) + "\n\n", first))
    return blocks


def _check_line(line: str, number: int, where: str) -> None:
    fields = line.split("\t")
    if len(fields) != _FIELDS:
        raise probekit.DataError(
            f"{where}: line {number}: found {len(fields)} tab-separated fields, expected {_FIELDS} "
            f"(ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC); line starts {line[:60]!r}")
    if not _ID.fullmatch(fields[0]):
        raise probekit.DataError(f"{where}: line {number}: ID {fields[0]!r} is not a word number (3), "
                                 "a multi-word range (1-2) or an empty node (8.1)")


def _example(block: str, first_line: int, tag: str, where: str) -> probekit.Example:
    try:
        (sentence,) = conllu.parse(block)
    except Exception as error:  # noqa: BLE001 - conllu raises its own ParseException and ValueErrors
        raise probekit.DataError(f"{where}: the sentence at line {first_line}: {error}") from error
    words, tags, text = [], [], []
    by_id = {token["id"]: token for token in sentence if isinstance(token["id"], int)}
    covered: set[int] = set()
    for token in sentence:
        token_id = token["id"]
        if isinstance(token_id, tuple) and token_id[1] == ".":
            continue  # an empty node: not a surface word
        if isinstance(token_id, tuple):  # a multi-word token: (first, "-", last)
            parts = [by_id[i] for i in range(token_id[0], token_id[2] + 1) if i in by_id]
            covered.update(range(token_id[0], token_id[2] + 1))
            label = "+".join(str(part[tag]) for part in parts)
        elif token_id in covered:
            continue  # a syntactic word of a multi-word token: its form is not in the text
        else:
            label = str(token[tag])
        words.append(token["form"])
        tags.append(label)
        text.append(token["form"] + ("" if (token["misc"] or {}).get("SpaceAfter") == "No" else " "))
    if not words:
        raise probekit.DataError(f"{where}: the sentence at line {first_line} has no words")
    return probekit.Example("".join(text).rstrip(), None, None, words=tuple(words), word_tags=tuple(tags))


@probekit.hookimpl
def probekit_register_sources(register):
    register(ConlluSource)
