"""probekit.api.activations: a model's hidden states per layer, as the token-level metrics see them."""
from __future__ import annotations

import torch
from transformers import AutoModel, AutoTokenizer

from probekit.api import activations
from probekit.testing.fixtures import save_tiny_model

TEXTS = ["the cat sat on the red house", "a dog ran", "the old farmer liked the quick green bird very much"]


def test_activations_are_the_real_tokens_hidden_states_in_order(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny", seed=3)
    got = activations(folder, TEXTS, batch_size=2, device="cpu")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        expected = [model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
                    for text in TEXTS]  # one text at a time: no padding at all
    assert sorted(got) == list(range(model.config.num_hidden_layers + 1))
    for layer, states in got.items():
        direct = torch.cat([hidden[layer][0] for hidden in expected]).double()  # (real tokens, hidden)
        assert states.dtype == torch.float64 and states.shape == direct.shape
        assert torch.allclose(states, direct, atol=1e-5)


def test_activations_of_chosen_layers(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny", seed=3)
    assert sorted(activations(folder, TEXTS, layers=[0, 2])) == [0, 2]


def test_activations_per_text_keep_each_texts_tokens(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny", seed=3)
    whole = activations(folder, TEXTS, batch_size=2, device="cpu")
    split = activations(folder, TEXTS, batch_size=2, device="cpu", per_text=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for layer, parts in split.items():
        assert [len(p) for p in parts] == [len(tokenizer(text)["input_ids"]) for text in TEXTS]
        assert torch.equal(torch.cat(parts), whole[layer])


def test_a_model_loads_once_for_many_calls(tmp_path, monkeypatch):
    import probekit.api as api
    folder = save_tiny_model(tmp_path / "tiny", seed=4)
    loads = []
    real = api.load_encoder
    monkeypatch.setattr(api, "load_encoder", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    api._loaded.cache_clear()
    for text in TEXTS * 10:  # one call per text
        activations(folder, [text], device="cpu")
    assert loads == [str(folder)]


FINETUNE_SPEC = """
name = "acts"
[models.pre]
id = "{base}"
[models.tuned]
base = "pre"
train = "d"
epochs = 1
batch_size = 8
max_length = 16
[data.d]
path = "{data}"
text = "text"
label = "label"
limit = 16
[metrics.svcca]
[[comparisons]]
name = "pre_vs_tuned"
a = "pre"
b = "tuned"
data = "d"
"""


def test_activations_of_a_model_the_spec_fine_tunes(tmp_path):
    from probekit.testing.fixtures import write_tiny_csv
    base = save_tiny_model(tmp_path / "tiny", seed=3)
    spec = tmp_path / "acts.toml"
    spec.write_text(FINETUNE_SPEC.format(base=base, data=write_tiny_csv(tmp_path / "d.csv", 16)))
    tuned = activations("tuned", TEXTS, spec=spec, device="cpu")
    pre = activations("pre", TEXTS, spec=spec, device="cpu")
    assert sorted(tuned) == sorted(pre) and all(t.shape == pre[layer].shape for layer, t in tuned.items())
    assert not torch.allclose(tuned[2], pre[2])  # the fine-tune moved the last layer
    assert torch.equal(pre[1], activations(base, TEXTS, device="cpu")[1])
