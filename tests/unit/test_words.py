"""Words to sub-tokens for every tokenizer family (tiny tokenizers trained in-process by `tokenizers`)."""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

import probekit
from probekit.data.batching import make_batches
from probekit.data.example import Example, tag_names
from probekit.data.words import NO_WORD, split_words, word_spans, word_tokens

CORPUS = [
    "The quick brown fox jumped over the lazy dogs near the riverbank yesterday.",
    "Unbelievably, the committee's recommendations weren't implemented until 2019!",
    "She re-read the well-known manuscript; its annotations were illegible.",
    "Tokenizers split uncommon words like antidisestablishmentarianism into pieces.",
] * 3
SENTENCES = [
    "Unbelievably, the riverbank's annotations weren't illegible.",
    "The well-known fox re-read 2019 manuscripts!",
]


def _bert():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def _byte_level(prefix_space: bool, roberta: bool):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1), add_prefix_space=prefix_space)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def _llama():
    # SentencePiece as Llama's tokenizer.json writes it: "▁" for spaces, one prepended, pieces never across a space.
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>")


FAMILIES = {
    "bert-wordpiece": _bert,
    "roberta-bpe-prefix-space": lambda: _byte_level(True, True),
    "gpt2-bpe-no-prefix-space": lambda: _byte_level(False, False),
    "llama-sentencepiece": _llama,
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sentence", SENTENCES)
def test_every_word_gets_exactly_its_own_sub_tokens(family, sentence):
    tokenizer = FAMILIES[family]()
    words = split_words(sentence)
    encoded = tokenizer(sentence, return_offsets_mapping=True, return_special_tokens_mask=True)
    found = word_tokens(encoded["offset_mapping"], word_spans(sentence, words))
    assert len(found) == len(words) >= 7
    exact = split = 0
    for word, tokens in zip(words, found, strict=True):
        assert tokens is not None, f"{family}: {word!r} got no sub-token"
        first, last = tokens
        assert not any(encoded["special_tokens_mask"][first:last + 1])
        # The word's sub-tokens decode to the word (BERT lowercases; SentencePiece may merge "word." into a piece
        # that then belongs to both words).
        decoded = tokenizer.decode(encoded["input_ids"][first:last + 1]).replace(" ", "").replace("##", "")
        expected = word.lower() if family.startswith("bert") else word
        assert expected in decoded, (family, word, decoded)
        exact += decoded == expected
        split += last > first
    assert exact >= len(words) - 2 and split >= 2, (family, exact, split)
    # Sub-tokens follow each other: a word's first token comes after the previous word's first.
    firsts = [tokens[0] for tokens in found]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_carry_word_alignment_tags_and_types(family):
    tokenizer = FAMILIES[family]()
    examples = [Example(s, None, i, words=split_words(s), word_tags=tuple("P" if w.isalpha() else "X" for w in split_words(s)))
                for i, s in enumerate(SENTENCES)]
    (batch,) = make_batches(examples, tokenizer, batch_size=2, max_length=64, tags=tag_names(examples))
    for row, example in enumerate(examples):
        n = len(example.words)
        assert (batch.word_first[row, :n] >= 0).all() and (batch.word_last[row, :n] >= batch.word_first[row, :n]).all()
        assert (batch.word_first[row, n:] == NO_WORD).all()
        assert batch.word_tags[row, :n].tolist() == [tag_names(examples).index(t) for t in example.word_tags]
        assert (batch.word_tags[row, n:] == NO_WORD).all() and batch.words_cut[row] == 0
    # The same form has the same type id, in both sentences.
    first = dict(zip(examples[0].words, batch.word_types[0].tolist()))
    second = dict(zip(examples[1].words, batch.word_types[1].tolist()))
    assert first["the"] != second["The"] and first["."] != second["!"] and first["annotations"] != first["the"]


def test_words_past_max_length_are_counted_never_silently_cut():
    tokenizer = _bert()
    sentence = SENTENCES[0]
    example = Example(sentence, None, 0, words=split_words(sentence), word_tags=("T",) * len(split_words(sentence)))
    (batch,) = make_batches([example], tokenizer, batch_size=1, max_length=6, tags=("T",))
    kept = int((batch.word_first[0] >= 0).sum())
    assert 0 < kept < len(example.words)
    assert batch.words_cut[0] == len(example.words) - kept


def test_a_word_that_maps_to_no_sub_token_is_bad_data():
    tokenizer = _bert()
    words = ("the", "\u200b", "fox")  # a zero-width space: BERT's normaliser removes it
    example = Example("the \u200b fox", None, 0, words=words, word_tags=("D", "X", "N"))
    with pytest.raises(probekit.DataError, match=r"'\\u200b' \(word 2 of .*\) maps to no sub-token.*remove the word"):
        list(make_batches([example], tokenizer, batch_size=1, max_length=64, tags=("D", "N", "X")))


def test_word_spans_refuses_a_word_not_in_the_text():
    with pytest.raises(ValueError, match="word 2 'cat' does not occur"):
        word_spans("the dog", ("the", "cat"))
