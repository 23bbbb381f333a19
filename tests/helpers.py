"""Offline test material: tiny random models saved as real model folders, small labelled files."""
from __future__ import annotations

import csv
import random

import torch

WORDS = ("the a film plot was good bad dull great not very and but movie cast story "
         "acting ending felt truly awful superb fine poor music long short").split()


def save_tiny_bert(folder, seed: int, *, layers: int = 2, hidden: int = 32, heads: int = 2, words=WORDS):
    """A random BERT with a word-level vocabulary, saved like any model folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=False)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_sentences(path, n: int, seed: int = 0):
    """A small labelled CSV: label 'pos' when 'good' or 'great' occurs, else 'neg'."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            writer.writerow([" ".join(words), "pos" if {"good", "great"} & set(words) else "neg"])
    return path
