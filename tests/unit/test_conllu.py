"""The conllu data source: UD sentences as examples with words and tags; malformed files by line number."""
from __future__ import annotations

import pytest

import probekit
from probekit.metrics.options import parse_options
from probekit.plugins.source_conllu import ConlluSource

UD = """# sent_id = 1
# text = Il parle du chat.
1\tIl\til\tPRON\tPRP\t_\t2\tnsubj\t_\t_
2\tparle\tparler\tVERB\tVB\t_\t0\troot\t_\t_
3-4\tdu\t_\t_\t_\t_\t_\t_\t_\t_
3\tde\tde\tADP\tIN\t_\t5\tcase\t_\t_
4\tle\tle\tDET\tDT\t_\t5\tdet\t_\t_
5\tchat\tchat\tNOUN\tNN\t_\t2\tobl\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

# sent_id = 2
1\tSue\tSue\tPROPN\tNNP\t_\t2\tnsubj\t_\t_
2\tlikes\tlike\tVERB\tVBZ\t_\t0\troot\t_\t_
3\tcoffee\tcoffee\tNOUN\tNN\t_\t2\tobj\t_\t_
3.1\tlikes\tlike\tVERB\tVBZ\t_\t_\t_\t2:conj\tCopyOf=2
4\tand\tand\tCCONJ\tCC\t_\t5\tcc\t_\t_
5\tBill\tBill\tPROPN\tNNP\t_\t3\tconj\t_\tSpaceAfter=No
6\t!\t!\tPUNCT\t.\t_\t2\tpunct\t_\t_
"""


def _source(tmp_path, text=UD, **table):
    path = tmp_path / "tiny.conllu"
    path.write_text(text)
    options, problems = parse_options(ConlluSource.Options, {"conllu": "tiny.conllu", **table})
    assert problems == []
    options, problems = ConlluSource().validate(options, tmp_path)
    assert problems == []
    return options


def test_sentences_become_examples_with_surface_words_and_their_tags(tmp_path):
    first, second = ConlluSource().load(_source(tmp_path), "specs/x.toml: data.ud")
    # A multi-word token is one surface word tagged with its words' tags; text follows SpaceAfter=No.
    assert first.text == "Il parle du chat." and first.label is None and first.text_pair is None
    assert first.words == ("Il", "parle", "du", "chat", ".")
    assert first.word_tags == ("PRON", "VERB", "ADP+DET", "NOUN", "PUNCT")
    # An empty node (3.1) is no surface word.
    assert second.words == ("Sue", "likes", "coffee", "and", "Bill", "!") and second.text == "Sue likes coffee and Bill!"


@pytest.mark.parametrize(("tag", "expected"), [("xpos", ("PRP", "VB", "IN+DT", "NN", ".")),
                                               ("deprel", ("nsubj", "root", "case+det", "obl", "punct"))])
def test_the_tag_column_is_an_option(tmp_path, tag, expected):
    first, _ = ConlluSource().load(_source(tmp_path, tag=tag), "w")
    assert first.word_tags == expected


def test_a_malformed_line_is_reported_with_its_number(tmp_path):
    broken = UD.replace("6\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_", "6\t.\t.\tPUNCT")
    with pytest.raises(probekit.DataError, match=r"data.ud \(.*tiny.conllu\): line 9: found 4 tab-separated fields, "
                                                 r"expected 10"):
        ConlluSource().load(_source(tmp_path, broken), "data.ud")
    bad_id = UD.replace("2\tparle", "two\tparle")
    with pytest.raises(probekit.DataError, match=r"line 4: ID 'two' is not a word number"):
        ConlluSource().load(_source(tmp_path, bad_id), "data.ud")


def test_a_missing_file_is_a_problem_of_the_key(tmp_path):
    options, _ = parse_options(ConlluSource.Options, {"conllu": "nope.conllu"})
    _, problems = ConlluSource().validate(options, tmp_path)
    assert [p.key for p in problems] == ["conllu"] and "is not a file" in problems[0].expected


def test_fingerprint_follows_content_and_tag_column(tmp_path):
    options = _source(tmp_path)
    source = ConlluSource()
    upos = source.fingerprint(options)
    assert upos != source.fingerprint(_source(tmp_path, tag="xpos"))
    (tmp_path / "tiny.conllu").write_text(UD.replace("chat", "chien"))
    assert source.fingerprint(options) != upos
