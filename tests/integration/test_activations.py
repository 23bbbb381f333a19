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
