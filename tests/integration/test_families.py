"""Every model family probekit knows, through every kind of metric, on tiny random models built here.

Each family gets a tokenizer of its kind built with the `tokenizers` library
(WordPiece for the BERT-likes, byte-level BPE for GPT-2 / OPT / GPT-NeoX / Qwen /
RoBERTa, a SentencePiece-style Unigram with Metaspace for Llama / Mistral / Gemma /
XLM-R / DeBERTa) and random models of 2 layers, hidden size 32, 2 heads. The matrix:
identical models give exactly 0 (distances) or 1 (similarities), different ones a
finite non-zero value; a decoder's left-padded batches give its right-padded values;
layer replacement matches copying the model and loading the pre-trained layer.
"""
from __future__ import annotations

import copy
import math
from functools import cache

import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModel, PreTrainedTokenizerFast

from probekit import api
from probekit.data.batching import make_batches
from probekit.engine.capture import forward
from probekit.engine.probe import comparability_problem
from probekit.errors import ModelError
from probekit.hooks.manager import build_manager
from probekit.metrics.attention import mean_over_rows, query_rows, row_js, row_plogp, row_share
from probekit.metrics.base import MetricError
from probekit.metrics.functional import CrossMoments, attention_js_per_example, datapoints
from probekit.metrics.tensors import AttentionInputs, AttentionMaps, Batch
from probekit.models.attention import RECOMPUTED, attention_path
from probekit.models.families import FAMILIES, embedding_modules, family_of, model_inputs, transformer_layers
from probekit.models.loading import LoadedModel, load_encoder, load_tokenizer, quiet_transformers
from probekit.plugins.attention_js import AttentionJS
from probekit import SVCCAOptions
from probekit.functional import svcca_rows
from probekit.testing.fixtures import run_metric, tiny_examples, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

CORPUS = [example.text for example in tiny_examples(200, seed=7)]
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=64)
DECODER = dict(SIZES, num_key_value_heads=1)  # grouped-query attention, as Llama-likes have
METRICS = ("svcca", "pwcca", "linear_cka", "attention_js", "attention_entropy", "layer_replacement")
SIMILARITIES = {"linear_cka"}


# ---------------------------------------------------------------- tokenizers of each kind


def _template(tokenizer: Tokenizer, first: str, last: str | None = None) -> None:
    """``first $A [last]`` around each text (BOS only for a decoder; [CLS] ... [SEP] or <s> ... </s> for an encoder)."""
    end = f" {last}" if last else ""
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A{end}", pair=f"{first} $A{end} $B:1{end}:1" if last else f"{first} $A $B:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in (first, last) if t])


def wordpiece(token_types: bool = True) -> PreTrainedTokenizerFast:
    """BERT's kind: lower-cased WordPiece, [CLS] text [SEP], token type ids."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials,
                                                                    show_progress=False))
    _template(tokenizer, "[CLS]", "[SEP]")
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_input_names=names)


def byte_bpe(specials: list[str], *, bos: str | None = None, eos: str | None = None, wrap: bool = False,
             **tokens: str) -> PreTrainedTokenizerFast:
    """GPT-2's kind: byte-level BPE (every byte in the vocabulary); BOS in front if given, ``bos ... eos`` if wrap."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    if bos:
        _template(tokenizer, bos, eos if wrap else None)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos,
                                   model_input_names=["input_ids", "attention_mask"], **tokens)


def unigram(specials: list[str], bos: str, last: str | None = None, **tokens: str) -> PreTrainedTokenizerFast:
    """SentencePiece's kind: Unigram over Metaspace pieces (▁word), ``bos text [last]``."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=150, special_tokens=specials, unk_token=tokens.get("unk_token"), show_progress=False))
    _template(tokenizer, bos, last)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos,
                                   model_input_names=["input_ids", "attention_mask"], **tokens)


def _roberta_tokenizer():
    return byte_bpe(["<s>", "<pad>", "</s>", "<unk>"], bos="<s>", eos="</s>", wrap=True, pad_token="<pad>",
                    unk_token="<unk>")


def _sentencepiece_encoder():
    return unigram(["<s>", "<pad>", "</s>", "<unk>"], "<s>", "</s>", eos_token="</s>", pad_token="<pad>",
                   unk_token="<unk>")


def _llama_tokenizer():
    """No pad token (probekit pads with </s>), BOS in front, padding on the left as chat models do."""
    return unigram(["<unk>", "<s>", "</s>"], "<s>", eos_token="</s>", unk_token="<unk>", padding_side="left")


def _gpt_tokenizer():
    """No BOS, no pad token (probekit pads with the end-of-text token)."""
    return byte_bpe(["<|endoftext|>"], eos="<|endoftext|>")


def _qwen_tokenizer():
    return byte_bpe(["<|endoftext|>"], eos="<|endoftext|>", pad_token="<|endoftext|>")


# ---------------------------------------------------------------- the families


#: model_type -> (its tokenizer, its config class and tiny settings)
BUILDS = {
    "bert": (wordpiece, transformers.BertConfig, SIZES),
    "roberta": (_roberta_tokenizer, transformers.RobertaConfig, SIZES),
    "xlm-roberta": (_sentencepiece_encoder, transformers.XLMRobertaConfig, SIZES),
    "deberta-v2": (lambda: unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[CLS]", "[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"),
                   transformers.DebertaV2Config,  # DeBERTa-v3's relative attention
                   dict(SIZES, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                        norm_rel_ebd="layer_norm", type_vocab_size=0)),
    "electra": (wordpiece, transformers.ElectraConfig, dict(SIZES, embedding_size=16)),  # embeddings projected
    "distilbert": (lambda: wordpiece(token_types=False), transformers.DistilBertConfig,
                   dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)),
    "modernbert": (wordpiece, transformers.ModernBertConfig,  # layer 1 global, layer 2 a 4-token window
                   dict(SIZES, global_attn_every_n_layers=2, local_attention=4)),
    "gpt2": (_gpt_tokenizer, transformers.GPT2Config, dict(n_embd=32, n_layer=2, n_head=2, n_positions=64)),
    "llama": (_llama_tokenizer, transformers.LlamaConfig, DECODER),
    "qwen2": (_qwen_tokenizer, transformers.Qwen2Config, DECODER),
    "mistral": (_llama_tokenizer, transformers.MistralConfig, dict(DECODER, sliding_window=4)),
    "gemma": (lambda: unigram(["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", eos_token="<eos>", pad_token="<pad>",
                              unk_token="<unk>", padding_side="left"),
              transformers.GemmaConfig, dict(DECODER, head_dim=16)),
    "gpt_neox": (_gpt_tokenizer, transformers.GPTNeoXConfig, dict(SIZES, rotary_pct=0.5)),
    "opt": (lambda: byte_bpe(["<pad>", "</s>", "<s>"], bos="<s>", eos="</s>", pad_token="<pad>"),
            transformers.OPTConfig,  # word embeddings of width 16, projected in and out
            dict(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2, max_position_embeddings=64,
                 word_embed_proj_dim=16)),
}
if hasattr(transformers, "Qwen3Config"):
    BUILDS["qwen3"] = (_qwen_tokenizer, transformers.Qwen3Config, dict(DECODER, head_dim=16))
if not hasattr(transformers, "ModernBertConfig"):
    del BUILDS["modernbert"]

DECODERS = [name for name in BUILDS if FAMILIES[name].causal]


@cache
def tokenizer_of(family: str) -> PreTrainedTokenizerFast:
    return BUILDS[family][0]()


def config_of(family: str, **changes):
    """The family's tiny config with the tokenizer's vocabulary and special token ids."""
    tokenizer = tokenizer_of(family)
    _, config_class, settings = BUILDS[family]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = dict(pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)
    config = config_class(vocab_size=len(tokenizer), **{**settings, **changes})
    for key, value in ids.items():
        if value is not None:
            setattr(config, key, value)
    return config


def random_model(family: str, seed: int, attn: str = "eager", **changes) -> torch.nn.Module:
    quiet_transformers()
    torch.manual_seed(seed)
    return AutoModel.from_config(config_of(family, **changes), attn_implementation=attn).eval()


def loaded(name: str, model: torch.nn.Module, family: str) -> LoadedModel:
    return LoadedModel(name, model, tokenizer_of(family), identity=name)


def perturbed(model: torch.nn.Module, scale: float = 0.05, seed: int = 1, keep=()) -> torch.nn.Module:
    """A "fine-tuned" copy: noise on every parameter except those of the modules ``keep`` names in ``model``."""
    tuned = copy.deepcopy(model)
    kept = {id(p) for module in keep for p in module.parameters()}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for original, parameter in zip(model.parameters(), tuned.parameters(), strict=True):
            if id(original) not in kept:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return tuned


def batches(family: str, padding_side: str | None = None, n: int = 48, size: int = 16) -> list:
    tokenizer = copy.deepcopy(tokenizer_of(family))
    if tokenizer.pad_token is None:  # as load_tokenizer does
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side or tokenizer.padding_side
    found = list(make_batches(tiny_examples(n, seed=3), tokenizer, batch_size=size, max_length=32))
    assert all(not b.attention_mask.all() for b in found), "every batch should hold padding"
    return found


@cache
def metric_class(name: str):
    return build_manager(autoload=False).metrics[name].metric


# ---------------------------------------------------------------- the matrix through a spec


def _spec(folder_a, folder_b) -> dict:
    return {
        "name": "families",
        "run": {"device": "cpu", "threads": 1, "batch_size": 16, "max_length": 32},
        "models": {"a": {"id": str(folder_a)}, "b": {"id": str(folder_b)}},
        "data": {"d": {"path": "d.csv"}},
        "metrics": {name: {} for name in METRICS},
        "comparisons": [{"name": "a_vs_b", "a": "a", "b": "b", "data": "d"},
                        {"name": "a_vs_a", "a": "a", "b": "a", "data": "d"}],
    }


@pytest.mark.parametrize("family", BUILDS)
def test_every_metric_through_a_spec(family, tmp_path):
    """Saved folders loaded as a spec loads them: identical models exactly 0 / 1, different ones finite and non-zero."""
    for name, seed in (("a", 0), ("b", 1)):
        random_model(family, seed).save_pretrained(tmp_path / name)
        tokenizer_of(family).save_pretrained(tmp_path / name)
    write_tiny_csv(tmp_path / "d.csv", 48)
    results = api.run(_spec(tmp_path / "a", tmp_path / "b"), output=tmp_path / "run", base_dir=tmp_path,
                      use_cache=False, plugins=["no:figures", "no:html", "no:report"])
    assert results.exit_code == 0 and results.errors == [], results.errors
    rows = results.table.to_pylist()
    for metric in METRICS:
        same = [r["value"] for r in rows if r["metric"] == metric and r["comparison"] == "a_vs_a"]
        moved = [r["value"] for r in rows if r["metric"] == metric and r["comparison"] == "a_vs_b"]
        assert same == [1.0 if metric in SIMILARITIES else 0.0] * len(same) and same, (metric, same)
        assert moved and all(math.isfinite(v) and v != 0 for v in moved), (metric, moved)
    assert {r["layer"] for r in rows if r["metric"] == "svcca"} == {0, 1, 2}


# ---------------------------------------------------------------- decoders: left padding


@pytest.mark.filterwarnings("ignore::probekit.metrics.functional.FewDatapointsWarning")  # 48 last tokens
@pytest.mark.parametrize("family", DECODERS)
def test_left_padding_gives_the_right_padded_values(family):
    """The same examples padded on the left and on the right: every metric's rows agree to 1e-6."""
    a, b = loaded("a", random_model(family, 0), family), loaded("b", random_model(family, 1), family)
    right, left = batches(family, "right"), batches(family, "left")
    assert all(bool(x.attention_mask[:, 0].all()) and not x.attention_mask[:, -1].all() for x in right)
    assert all(not x.attention_mask[:, 0].all() and bool(x.attention_mask[:, -1].all()) for x in left)
    for metric in METRICS:
        options = {"tokens": "last"} if metric == "svcca" else {}  # the last token moves the most with padding
        rows_right = run_metric(metric_class(metric), a, b, right, **options)
        rows_left = run_metric(metric_class(metric), a, b, left, **options)
        assert [(r.layer, r.head) for r in rows_left] == [(r.layer, r.head) for r in rows_right]
        for r, l in zip(rows_right, rows_left, strict=True):
            assert l.value == pytest.approx(r.value, abs=1e-6), (metric, r, l)


# ---------------------------------------------------------------- attention rows without maps

#: Which families' attention rows are recomputed from queries and keys under SDPA, and which keep eager maps.
MAPS_ONLY = {"deberta-v2"}
RECOMPUTABLE = [name for name in BUILDS if name not in MAPS_ONLY]


def test_which_families_take_which_attention_path():
    assert {name for name, family in FAMILIES.items() if family.maps_only} == MAPS_ONLY
    for name in BUILDS:
        model = random_model(name, 0)
        expected = "maps" if name in MAPS_ONLY else "recomputed"
        assert attention_path(model, "auto") == expected, name
        assert attention_path(model, "maps") == "maps"
    with pytest.raises(ModelError, match=r"models.x: \[run\] attention = \"recomputed\", but DeBERTa-v2 attention "
                                         r"cannot be recomputed .* relative position"):
        attention_path(random_model("deberta-v2", 0), "recomputed", "models.x")


def long_model(family: str, seed: int, tokens: int, attn: str, **changes) -> torch.nn.Module:
    """The family's tiny model with room for ``tokens`` positions, its weights drawn wide enough for attention far
    from uniform (at the default 0.02 two random models' rows differ by JS ~1e-5, too close to the tolerance)."""
    positions = {"n_positions": 2 * tokens} if family == "gpt2" else {"max_position_embeddings": 2 * tokens}
    spread = {"init_std": 0.3} if family == "opt" else {"initializer_range": 0.3}
    return random_model(family, seed, attn=attn, **positions, **spread, **changes)


def padded_batch(family: str, tokens: int, side: str) -> Batch:
    """Random tokens, example 0 full, example 1 with a third of the row padding on ``side``."""
    config = config_of(family)
    generator = torch.Generator().manual_seed(tokens)
    ids = torch.randint(5, config.vocab_size, (2, tokens), generator=generator)
    mask = torch.ones(2, tokens, dtype=torch.long)
    pad = tokens // 3
    if side == "left":
        mask[1, :pad] = 0
    else:
        mask[1, tokens - pad:] = 0
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.where(mask == 1, ids, pad_id)
    return Batch(ids, mask, torch.zeros_like(mask), torch.zeros_like(mask))


def statistics(a, b, batch: Batch) -> torch.Tensor:
    """Per layer, example and head: JS of a and b, a's entropy, a's share on the first real token."""
    first = query_rows(batch.attention_mask, exclude_first=False).long().cumsum(-1) == 1
    per_layer = []
    for layer in range(a.attention_layers):
        rows_a, rows_b = a.rows(layer), b.rows(layer)
        per_layer.append(torch.stack([
            mean_over_rows(row_js(rows_a, rows_b, batch.attention_mask), batch.attention_mask),
            mean_over_rows(-row_plogp(rows_a, batch.attention_mask), batch.attention_mask),
            mean_over_rows(row_share(rows_a, batch.attention_mask, first), batch.attention_mask)]))
    return torch.stack(per_layer)


def recomputed_and_eager(family: str, tokens: int, side: str, **changes) -> tuple[torch.Tensor, torch.Tensor]:
    needs = frozenset({"attention_rows"})
    batch = padded_batch(family, tokens, side)
    a, b = long_model(family, 0, tokens, "eager", **changes), long_model(family, 1, tokens, "eager", **changes)
    eager = [forward(m, batch, needs) for m in (a, b)]
    assert isinstance(eager[0].rows(0), AttentionMaps)
    for model in (a, b):
        model.set_attn_implementation(RECOMPUTED)
    chunk = tokens // 3 + 1  # uneven chunks of query rows
    recomputed = [forward(m, batch, needs, chunk=chunk) for m in (a, b)]
    assert isinstance(recomputed[0].rows(0), AttentionInputs) and recomputed[0].attentions is None
    assert len(list(recomputed[0].rows(0).spans())) == 3
    return statistics(*recomputed, batch), statistics(*eager, batch)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", RECOMPUTABLE)
def test_recomputed_attention_equals_the_eager_maps(family, side):
    """JS, entropy and share from queries and keys recorded under SDPA equal the eager maps' to 1e-6 (float32),
    at 16 tokens with padding on either side: post-rotary, grouped-query, sliding windows (Mistral, ModernBERT)."""
    recomputed, eager = recomputed_and_eager(family, 16, side)
    assert torch.isfinite(eager).all() and eager[:, 0].min() > 1e-3  # the two models' attention differs
    torch.testing.assert_close(recomputed, eager, rtol=0, atol=1e-6)


@pytest.mark.parametrize("changes", [dict(scale_attn_by_inverse_layer_idx=True), dict(reorder_and_upcast_attn=True)])
def test_gpt2_scaling_variants_are_recomputed_as_eager_computes_them(changes):
    """GPT-2's per-layer scaling (1 / layer) reaches the attention function in its ``scaling``; its eager-only
    reordered, upcast product computes the same rows."""
    recomputed, eager = recomputed_and_eager("gpt2", 16, "left", **changes)
    assert eager[:, 0].min() > 1e-3
    torch.testing.assert_close(recomputed, eager, rtol=0, atol=1e-6)


def _usual_side(family: str) -> str:
    return "left" if FAMILIES[family].causal else "right"


#: At 512 tokens each family's usual padding side by default; the other side under the slow marker (+14 s).
AT_512 = [(family, _usual_side(family)) for family in RECOMPUTABLE] + [
    pytest.param(family, {"left": "right", "right": "left"}[_usual_side(family)], marks=pytest.mark.slow)
    for family in RECOMPUTABLE]


@pytest.mark.parametrize(("family", "side"), AT_512)
def test_recomputed_attention_equals_the_eager_maps_at_512_tokens(family, side):
    recomputed, eager = recomputed_and_eager(family, 512, side)
    assert torch.isfinite(eager).all() and eager[:, 0].min() > 1e-3
    torch.testing.assert_close(recomputed, eager, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- layer replacement against the definition


def direct_replacement(pretrained, finetuned, batch_list) -> list[float]:
    """The definition, the slow way: per layer a copy of the fine-tuned model with the pre-trained layer loaded."""
    def last_layer(model):
        with torch.no_grad():
            states = [model(**model_inputs(model, b)).last_hidden_state for b in batch_list]
        return [datapoints(s, b.attention_mask, "all") for s, b in zip(states, batch_list, strict=True)]

    target = last_layer(finetuned)
    per_layer = []
    for layer in range(len(transformer_layers(pretrained)) + 1):
        replaced = copy.deepcopy(finetuned)
        if layer == 0:
            pairs = zip(embedding_modules(pretrained), embedding_modules(replaced), strict=True)
        else:
            pairs = [(transformer_layers(pretrained)[layer - 1], transformer_layers(replaced)[layer - 1])]
        for source, destination in pairs:
            destination.load_state_dict(source.state_dict())
        moments = CrossMoments()
        for x, y in zip(last_layer(replaced), target, strict=True):
            moments.update(x, y)
        per_layer.append(moments)
    return [row.value for row in svcca_rows(per_layer, SVCCAOptions(), n_examples=0)]


@pytest.mark.parametrize("family", BUILDS)
def test_layer_replacement_matches_the_definition(family):
    pretrained = random_model(family, 0)
    finetuned = perturbed(pretrained)
    batch_list = batches(family, n=32)
    rows = run_metric(metric_class("layer_replacement"), loaded("pre", pretrained, family),
                      loaded("tuned", finetuned, family), batch_list)
    expected = direct_replacement(pretrained, finetuned, batch_list)
    assert [r.value for r in rows] == pytest.approx(expected, abs=1e-6)
    assert all(value > 1e-4 for value in expected), "each layer's perturbation should move the last layer"


@pytest.mark.parametrize("family", BUILDS)
def test_the_embedding_modules_are_all_that_computes_hidden_states_0(family):
    """Noise on everything but the table's embedding modules leaves hidden_states[0] as it was."""
    model = random_model(family, 0)
    others = perturbed(model, scale=0.5, keep=embedding_modules(model))
    batch = batches(family)[0]
    x = forward(model, batch, frozenset({"hidden_states"})).hidden_states[0]
    y = forward(others, batch, frozenset({"hidden_states"})).hidden_states[0]
    assert torch.equal(x, y)
    assert len(transformer_layers(model)) == 2


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_layer_replacement_across_attention_implementations(family):
    """An eager pre-trained model and an SDPA fine-tuned one: each layer gets masks in its own form."""
    pretrained = random_model(family, 0, attn="eager")
    finetuned = perturbed(random_model(family, 0, attn="sdpa"))
    batch_list = batches(family, n=32)
    rows = run_metric(metric_class("layer_replacement"), loaded("pre", pretrained, family),
                      loaded("tuned", finetuned, family), batch_list)
    assert [r.value for r in rows] == pytest.approx(direct_replacement(pretrained, finetuned, batch_list), abs=1e-6)


def test_only_the_changed_layer_of_a_decoder_counts():
    """Llama with only layer 2 fine-tuned: replacing anything else is exactly 0, layer 2 is not."""
    pretrained = random_model("llama", 0)
    layers = transformer_layers(pretrained)
    finetuned = perturbed(pretrained, scale=0.2, keep=[*embedding_modules(pretrained), layers[0],
                                                       pretrained.norm])
    rows = run_metric(metric_class("layer_replacement"), loaded("pre", pretrained, "llama"),
                      loaded("tuned", finetuned, "llama"), batches("llama", n=32))
    assert [r.value for r in rows[:2]] == [0.0, 0.0] and rows[2].value > 1e-3


def test_deberta_with_a_convolution_cannot_replace_layers():
    model = loaded("pre", random_model("deberta-v2", 0, conv_kernel_size=3), "deberta-v2")
    with pytest.raises(MetricError, match=r"pre, a DeBERTa-v2 model: its convolution after layer 1"):
        run_metric(metric_class("layer_replacement"), model, model, batches("deberta-v2"))


# ---------------------------------------------------------------- decoder conventions


@pytest.mark.parametrize("metric", ["svcca", "linear_cka", "layer_replacement"])
def test_cls_on_a_decoder_is_an_error(metric):
    a = loaded("a", random_model("gpt2", 0), "gpt2")
    with pytest.raises(MetricError, match=r"decoders have no \[CLS\].*use tokens = 'last' or 'mean'"):
        run_metric(metric_class(metric), a, a, batches("gpt2"), tokens="cls")


def test_first_and_last_tokens_under_either_padding():
    """'cls' takes each example's first real token and 'last' its last, wherever the padding is."""
    hidden = torch.arange(2 * 4, dtype=torch.float64).reshape(2, 4, 1)  # (batch, tokens, hidden)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert datapoints(hidden, right, "cls").flatten().tolist() == [0, 4]
    assert datapoints(hidden, right, "last").flatten().tolist() == [2, 7]
    assert datapoints(hidden, left, "cls").flatten().tolist() == [1, 4]
    assert datapoints(hidden, left, "last").flatten().tolist() == [3, 7]


def _js_direct(p: np.ndarray, q: np.ndarray, rows: list[int], keys: list[int]) -> float:
    """Mean over ``rows`` of JS(p[i] || q[i]) over ``keys`` (one head), in float64 numpy."""
    def kl(u: np.ndarray, m: np.ndarray) -> float:  # 0 log 0 = 0
        used = u > 0
        return float(np.sum(u[used] * np.log(u[used] / m[used])))

    values = []
    for i in rows:
        x, y = p[i, keys], q[i, keys]
        values.append(0.5 * kl(x, (x + y) / 2) + 0.5 * kl(y, (x + y) / 2))
    return float(np.mean(values))


def test_causal_attention_js_rows_and_the_bos_row():
    """Left-padded Llama: each real query row's mass is on its causal real keys; JS averages those rows, and
    exclude_special leaves out the BOS row (the attention sink)."""
    a, b = random_model("llama", 0), random_model("llama", 1)
    batch = batches("llama", "left")[0]
    needs = frozenset({"attentions"})
    p, q = forward(a, batch, needs).attentions[0].double(), forward(b, batch, needs).attentions[0].double()
    real = batch.attention_mask.bool()
    future = torch.ones(real.shape[1], real.shape[1]).triu(1).bool()
    for example in range(batch.size):  # real query rows (padding rows are uniform: masked out of everything)
        rows = p[example][:, real[example]]  # (heads, real queries, keys)
        assert (rows[:, future[real[example]]] == 0).all() and (rows[:, :, ~real[example]] == 0).all()
    bos = batch.special_tokens_mask.bool() & real
    assert bos.sum(1).tolist() == [1] * batch.size and (bos.int().argmax(1) == real.int().argmax(1)).all()

    everything = attention_js_per_example(p, q, batch.attention_mask)  # (batch, heads)
    without_bos = attention_js_per_example(p, q, batch.attention_mask, query_mask=real & ~bos)
    for example in range(batch.size):
        positions = real[example].nonzero().flatten().tolist()
        for head in range(p.shape[1]):
            pe, qe = p[example, head].numpy(), q[example, head].numpy()
            assert everything[example, head] == pytest.approx(_js_direct(pe, qe, positions, positions), abs=1e-12)
            assert without_bos[example, head] == pytest.approx(_js_direct(pe, qe, positions[1:], positions), abs=1e-12)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_exclude_first_leaves_out_the_sink_of_a_decoder_without_bos(padding):
    """Qwen2's tokenizer adds no BOS: exclude_special has no row to leave out; exclude_first leaves out each
    example's first real query row (the attention sink), under either padding, in attention_js's own numbers."""
    a, b = random_model("qwen2", 0), random_model("qwen2", 1)
    batch = batches("qwen2", padding)[0]
    real = batch.attention_mask.bool()
    assert not (batch.special_tokens_mask.bool() & real).any()
    rows = query_rows(batch.attention_mask, batch.special_tokens_mask, exclude_first=True).bool()
    assert (rows.sum(1) == real.sum(1) - 1).all() and not (rows & ~real).any()
    assert not (rows & (real.long().cumsum(1) == 1)).any()
    needs = frozenset({"attentions"})
    p, q = forward(a, batch, needs).attentions, forward(b, batch, needs).attentions
    metric = lambda **options: run_metric(AttentionJS, loaded("a", a, "qwen2"), loaded("b", b, "qwen2"),  # noqa: E731
                                          [batch], **options)
    first = {row.layer: row.value for row in metric(exclude_first=True) if row.head is None}
    direct = {layer + 1: float(attention_js_per_example(x.double(), y.double(), batch.attention_mask,
                                                        query_mask=rows).mean())
              for layer, (x, y) in enumerate(zip(p, q, strict=True))}
    assert first == pytest.approx(direct, abs=1e-12)
    every = {row.layer: row.value for row in metric() if row.head is None}
    assert all(first[layer] != every[layer] for layer in first)


# ---------------------------------------------------------------- loading


def test_a_decoder_tokenizer_without_pad_pads_with_eos_on_its_side(tmp_path):
    tokenizer_of("llama").save_pretrained(tmp_path / "llama")
    tokenizer = load_tokenizer(str(tmp_path / "llama"), "models.x")
    assert tokenizer.pad_token == "</s>" and tokenizer.padding_side == "left"
    batch = next(make_batches(tiny_examples(8), tokenizer, batch_size=8, max_length=32))
    assert (batch.attention_mask[:, -1] == 1).all() and (batch.attention_mask[:, 0] == 0).any()


def test_a_tokenizer_with_nothing_to_pad_with_is_named(tmp_path):
    bare = Tokenizer(models.WordLevel({"the": 0, "cat": 1}))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=bare).save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelError, match=r"models.x: the tokenizer .* has no pad, end-of-text or unknown token"):
        load_tokenizer(str(tmp_path / "bare"), "models.x")


def test_an_unknown_family_is_named_with_how_to_add_it(tmp_path):
    config = transformers.AlbertConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)
    model = AutoModel.from_config(config)
    with pytest.raises(ModelError, match=r"AlbertModel \(config.model_type 'albert'\).*add an entry to "
                                         r"FAMILIES in probekit/models/families.py"):
        family_of(model)
    model.save_pretrained(tmp_path / "albert")
    with pytest.raises(ModelError, match=r"^models.x: probekit does not know the model family of AlbertModel"):
        load_encoder(str(tmp_path / "albert"), "models.x", eager=True, device=torch.device("cpu"),
                     dtype=torch.float32)


def test_models_of_two_families_are_not_compared():
    """Llama and Mistral share a tokenizer and a depth here, yet their layers are not each other's."""
    llama = loaded("llama", random_model("llama", 0), "llama")
    mistral = loaded("mistral", random_model("mistral", 0), "mistral")
    assert comparability_problem(llama, mistral) == (
        "models.llama and models.mistral have different model families (Llama and Mistral); the metrics compare "
        "the same tokens and layers of both models")
    assert comparability_problem(llama, loaded("llama2", random_model("llama", 1), "llama")) == ""


def test_deberta_forced_onto_recomputed_attention_is_bad_input(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        random_model("deberta-v2", seed).save_pretrained(tmp_path / name)
        tokenizer_of("deberta-v2").save_pretrained(tmp_path / name)
    write_tiny_csv(tmp_path / "d.csv", 16)
    spec = _spec(tmp_path / "a", tmp_path / "b")
    spec["run"]["attention"] = "recomputed"
    spec["metrics"] = {"attention_js": {}}
    with pytest.raises(ModelError, match=r"models\.a: \[run\] attention = \"recomputed\", but DeBERTa-v2 attention "
                                         r"cannot be recomputed from queries and keys"):
        api.run(spec, output=tmp_path / "run", base_dir=tmp_path, use_cache=False,
                plugins=["no:figures", "no:html", "no:report"])
