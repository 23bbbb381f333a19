"""LoRA adapters through peft: adding them for a fine-tune, merging them into the weights, loading a declared one.

probekit probes merged weights: W + B·A·(alpha / rank) is an ordinary model, so every
metric, snapshot and cache entry treats a LoRA fine-tune as it treats a full one.
peft is imported inside the functions, as transformers is: importing probekit stays cheap.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from probekit.errors import ModelError
from probekit.models.loading import CLASSIFIER_HEADS, load_weights, model_identity

if TYPE_CHECKING:
    from probekit.models.settings import FinetuneSettings

#: What peft writes beside an adapter's weights; a folder without it is no adapter.
ADAPTER_CONFIG = "adapter_config.json"

#: Each family's attention query and value projections (LoRA's usual targets, Hu et al. 2021), by
#: config.model_type, for every family of probekit/models/families.py. GPT-2, GPT-NeoX and ModernBERT
#: fuse query, key and value into one projection: LoRA adapts that one.
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "deberta-v2": ("query_proj", "value_proj"),
    "modernbert": ("Wqkv",),
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "gpt_neox": ("query_key_value",),
    "opt": ("q_proj", "v_proj"),
}

UNCHANGED = "the LoRA adapter leaves every encoder weight unchanged; its comparisons will measure 0"


class UnchangedModelWarning(UserWarning):
    """A LoRA fine-tune or adapter whose merged encoder is the base model, weight for weight."""


def with_lora(model: torch.nn.Module, settings: FinetuneSettings, description: str) -> torch.nn.Module:
    """``model`` (with a sequence-classification head, or under objective "lm" a causal LM head) wrapped by peft for
    a LoRA fine-tune of ``settings``: only the adapters and a classification head train; a language model's head is
    pre-trained (and often tied to the embeddings), so it stays as it is. ModelError naming ``target_modules`` when a
    name matches no module."""
    from peft import LoraConfig, get_peft_model

    targets = list(settings.target_modules or _default_targets(model, description))
    # Matched as peft matches a list of names (the name, or a path ending in .name); peft itself adapts the
    # names that match and passes over the others in silence.
    names = [name for name, _ in model.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if unmatched:
        raise ModelError(f"{description}.target_modules: {unmatched} match no module of {type(model).__name__}; "
                         f"its attention projections are named {attention_projections(model)}")
    _check_rank(model, targets, settings.rank, description)
    classify = settings.objective == "classification"
    config = LoraConfig(task_type="SEQ_CLS" if classify else "CAUSAL_LM", r=settings.rank, lora_alpha=settings.alpha,
                        lora_dropout=settings.lora_dropout, target_modules=targets,
                        modules_to_save=head_modules(model) if classify else None)
    try:
        with _quiet_peft():
            return get_peft_model(model, config)
    except ValueError as error:  # a module LoRA cannot adapt, e.g. a whole attention block rather than a projection
        supported = str(error).rpartition(" is not supported. ")[2] or str(error).splitlines()[0]  # past the repr
        raise ModelError(f"{description}.target_modules: {targets} name a module LoRA cannot adapt: {supported} "
                         f"Its attention projections are named {attention_projections(model)}") from None


def _check_rank(model: torch.nn.Module, targets: list[str], rank: int, description: str) -> None:
    """A ModelError when ``rank`` exceeds the narrowest width of a targeted layer: an adapter B·A of a
    d_out x d_in layer has rank at most min(d_in, d_out), so more trains parameters that add nothing."""
    widths = {name.rpartition(".")[2]: min(weight.shape[:2]) for name, module in model.named_modules()
              if any(name == t or name.endswith(f".{t}") for t in targets)
              and isinstance(weight := getattr(module, "weight", None), torch.Tensor) and weight.dim() >= 2}
    if widths and rank > min(widths.values()):
        narrowest = min(widths, key=widths.__getitem__)
        raise ModelError(f"{description}.rank: found {rank}, above the width of the layers it adapts ({narrowest}: "
                         f"{widths[narrowest]}); an adapter B·A of a d_out x d_in layer has rank at most "
                         f"min(d_in, d_out), so set rank to at most {widths[narrowest]} (LoRA's ranks are usually "
                         "4 to 64)")


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft asks transformers 5 ``is_gradient_checkpointing``, which warns that it is deprecated: noise
    beside probekit's progress, and nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _default_targets(model: torch.nn.Module, description: str) -> tuple[str, ...]:
    model_type = model.config.model_type
    if model_type not in DEFAULT_TARGETS:
        raise ModelError(f"{description}.target_modules: probekit has no default LoRA targets for model_type "
                         f"{model_type!r}; name them (its attention projections are named "
                         f"{attention_projections(model)})")
    return DEFAULT_TARGETS[model_type]


def head_modules(model: torch.nn.Module) -> list[str]:
    """The task head: the children of ``model`` with weights, outside its transformer (``base_model``)."""
    if model.base_model is model:  # a bare transformer (AutoModel) has no head
        return []
    return [name for name, child in model.named_children()
            if child is not model.base_model and any(True for _ in child.parameters())]


def attention_projections(model: torch.nn.Module) -> list[str]:
    """The names of the linear layers inside attention blocks (``query``, ``q_proj``, ``c_attn``, ...)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if ("attn" in name or "attention" in name) and type(module).__name__ in ("Linear", "Conv1D")})


def _adapted(model: torch.nn.Module):
    """``(name, original)`` for each module of ``model`` that peft wrapped: a LoRA layer's base layer, or the
    original of a module it trains whole (``modules_to_save``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            yield name, module.get_base_layer()
        elif isinstance(module, ModulesToSaveWrapper):
            yield name, module.original_module


def merge(wrapped: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
    """The model with its adapters merged into the weights (peft ``merge_and_unload``), and whether
    that left every weight of its transformer as it was (a B still zero, or too small to change a float32 weight)."""
    encoder = wrapped.get_base_model().base_model
    before = {name: {k: v.detach().clone() for k, v in original.state_dict().items()}
              for name, original in _adapted(encoder)}
    merged = wrapped.merge_and_unload()
    unchanged = all(torch.equal(merged.base_model.get_submodule(name).state_dict()[k], v)
                    for name, state in before.items() for k, v in state.items())
    return merged, unchanged


def merged_copy(wrapped: torch.nn.Module) -> torch.nn.Module:
    """A merged copy for a snapshot; training goes on with ``wrapped``. Merging in place and unmerging
    again would not give back the same float32 weights, and the rest of training would differ."""
    return copy.deepcopy(wrapped).merge_and_unload()


def warn_unchanged(description: str) -> None:
    warnings.warn(f"{description}: {UNCHANGED}", UnchangedModelWarning, stacklevel=2)


def adapter_identity(adapter: str) -> str:
    """What determines an adapter's weights, for cache keys: a folder's content, else the hub id."""
    return model_identity(adapter)


def load_merged(base_source: str, adapter: str, description: str, revision: str | None = None
                ) -> tuple[torch.nn.Module, bool]:
    """The transformer of ``base_source`` with the LoRA ``adapter`` merged in (no task head: probing reads
    the transformer), and whether the adapter left it unchanged. ModelError naming ``.adapter`` when the
    adapter does not read or was trained on another base."""
    from peft import PeftModel, load_peft_weights, set_peft_model_state_dict

    config = _adapter_config(adapter, description)
    mismatch = _base_mismatch(config.base_model_name_or_path, base_source)
    if mismatch:
        raise ModelError(f"{description}.adapter: {adapter!r} was trained on {config.base_model_name_or_path!r}, "
                         f"not on the declared id {base_source!r} ({mismatch}); make `id` the model it was trained on")
    # The adapter's weights are named after the model class it was trained on (a head's class prefixes them).
    model = load_weights(_task_class(config.task_type), base_source, description, new=CLASSIFIER_HEADS,
                         revision=revision, dtype=torch.float32)
    heads = head_modules(model)
    # The head is left out: its number of labels is not known here, and probing never reads it.
    config.modules_to_save = [m for m in config.modules_to_save or () if m not in heads] or None
    config.task_type = None
    try:
        with _quiet_peft():
            wrapped = PeftModel(model, config)
        weights = {k: v for k, v in load_peft_weights(adapter).items()
                   if k.removeprefix("base_model.model.").split(".")[0] not in heads}
        loaded = set_peft_model_state_dict(wrapped, weights)
    except (RuntimeError, ValueError) as error:  # a size mismatch; peft's "target modules not found"
        lines = str(error).splitlines()  # torch heads its list of size mismatches with a line that names none
        reason = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
        raise ModelError(f"{description}.adapter: {adapter!r} does not fit the base {base_source!r} (was it "
                         f"trained on another model?): {reason}") from None
    strays = [k for k in (*loaded.unexpected_keys, *loaded.missing_keys) if "lora_" in k]
    if strays:
        raise ModelError(f"{description}.adapter: {adapter!r} does not fit the base {base_source!r}: its weights "
                         f"do not line up with the base's modules (e.g. {strays[0]}); was it trained on another model?")
    merged, unchanged = merge(wrapped)
    return merged.base_model, unchanged


def _adapter_config(adapter: str, description: str):
    from peft import PeftConfig

    try:
        config = PeftConfig.from_pretrained(adapter)
    except (OSError, ValueError) as error:
        raise ModelError(f"{description}.adapter: cannot read the adapter {adapter!r}: {str(error).splitlines()[0]}"
                         "\n  A hub id needs internet (or the HF cache); a folder needs adapter_config.json "
                         "and the adapter's weights, as peft's save_pretrained writes them") from None
    if config.peft_type != "LORA":
        raise ModelError(f"{description}.adapter: {adapter!r} is a {config.peft_type} adapter; probekit merges "
                         "LoRA adapters only")
    return config


def _base_mismatch(recorded: str | None, declared: str) -> str:
    """Why the base an adapter records is known to be another model than the declared one ("" when it
    matches or cannot be told: a folder of another machine, or a hub id against a local copy)."""
    if not recorded:
        return ""
    if Path(recorded).is_dir() and Path(declared).is_dir():
        same = model_identity(str(Path(recorded).resolve())) == model_identity(str(Path(declared).resolve()))
        return "" if same else "the two folders hold different weights"
    if not Path(declared).is_dir() and not recorded.startswith((".", "/", "~")):
        return "" if recorded == declared else "another hub id"
    return ""


def _task_class(task_type: str | None):
    """The transformers class of a peft task type (what the adapter's weight names were written against)."""
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering,
                              AutoModelForSequenceClassification, AutoModelForTokenClassification)

    classes = {"SEQ_CLS": AutoModelForSequenceClassification, "TOKEN_CLS": AutoModelForTokenClassification,
               "CAUSAL_LM": AutoModelForCausalLM, "QUESTION_ANS": AutoModelForQuestionAnswering}
    return classes.get(task_type, AutoModel)
