"""How a fine-tune trains, as a spec declares it: the settings and their allowed values, apart from the training
code (models/finetune.py) so that reading a spec needs neither torch nor the trainer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from probekit.declare import Rule, between, positive

#: How a fine-tune trains: every weight, or LoRA adapters on target_modules (and the head), merged afterwards.
Method = Literal["full", "lora"]
METHODS = get_args(Method)
#: The settings only LoRA reads. A full fine-tune's cache key leaves them (and ``method``) out, so full
#: fine-tunes keep the keys they had before LoRA existed.
LORA_KEYS = ("rank", "alpha", "target_modules", "lora_dropout")
#: What a fine-tune trains for: the labels (a classification head), or the next token of the texts (a decoder's LM
#: head). A classification fine-tune's cache key leaves ``objective`` out: it keeps the key it had before "lm" existed.
Objective = Literal["classification", "lm"]
OBJECTIVES = get_args(Objective)
#: The config attributes ``dropout`` sets: BERT's (and RoBERTa's, ELECTRA's, DeBERTa's) hidden and attention dropout.
DROPOUT_NAMES = ("hidden_dropout_prob", "attention_probs_dropout_prob")


_UNIT = between(0, 1, "a probability in [0, 1)", open_high=True)


@dataclass(frozen=True)
class FinetuneSettings:
    """The paper's recipe (Table 1): Adam, slanted triangular schedule, dropout 0.1. Each default is stated
    here only; the annotations are what a spec's ``[finetune]`` (or a fine-tuned model's table) may give."""

    # A value outside these ranges cannot train: lr = 0 gives back the base model, lr < 0 climbs the loss.
    lr: Annotated[float, Rule(lambda v: v > 0, "a positive learning rate, e.g. 3e-5")] = 3e-5
    batch_size: Annotated[int, positive] = 32
    epochs: Annotated[int, positive] = 3
    max_length: Annotated[int, positive] = 128
    seed: int = 0
    warmup: Annotated[float, between(0, 1, "a fraction of steps in [0, 1)", open_high=True)] = 0.1  # cut_frac of
    # the slanted triangular schedule
    ratio: Annotated[float, Rule(lambda v: v >= 1, "a number >= 1 (peak / lowest learning rate)")] = 32.0
    dropout: Annotated[float, _UNIT] = 0.1
    weight_decay: Annotated[float, Rule(lambda v: v >= 0, "a weight decay >= 0, e.g. 0.01")] = 0.0
    limit: Annotated[int | None, positive] = None  # at most this many training examples
    snapshots: tuple[Annotated[float, between(0, 1, "fractions of training in (0, 1], e.g. [0.25, 0.5, 1.0]",
                                              open_low=True)], ...] = ()  # when to keep a checkpoint
    method: Method = "full"
    rank: Annotated[int, positive] = 8  # LoRA: the rank r of each adapter B·A
    alpha: Annotated[float, Rule(lambda v: v > 0, "a positive LoRA scale, e.g. 16 (each B·A is scaled by alpha "
                                 "/ rank)")] = 16.0
    # LoRA: module names (as peft matches them: "query" is every module whose name ends in .query); None: the
    # family's query and value projections. Whether they exist is known when the model loads.
    target_modules: Annotated[tuple[str, ...] | None, Rule(
        lambda names: bool(names) and all(name.strip() for name in names),
        "module names, e.g. [\"query\", \"value\"] (leave it out for the family's query and value projections)")] = None
    lora_dropout: Annotated[float, _UNIT] = 0.0  # LoRA: dropout on each adapter's input
    objective: Objective = "classification"

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshots", tuple(sorted({float(s) for s in self.snapshots})))
