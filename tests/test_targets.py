"""Target modules resolved per model family and placement, explicit targets, and the unknown-model error."""

from __future__ import annotations

import re

import pytest
import torch
from peft import get_peft_model
from tiny_models import family_models, pixel_values, tiny_vit
from torch import nn

from hf_vit_adapter import AdapterConfig

EXPECTED_SUFFIXES = {
    "houlsby": {"o_proj", "out_proj", "fc2"},
    "ffn": {"fc2"},
    "parallel": {"mlp"},
}


@pytest.mark.parametrize("placement", ["houlsby", "ffn", "pfeiffer", "parallel"])
def test_every_known_family_is_resolved(placement):
    for name, model in family_models().items():
        peft_model = get_peft_model(model, AdapterConfig(bottleneck_size=4, placement=placement))
        targeted = peft_model.base_model.targeted_module_names
        per_block = 2 if placement == "houlsby" else 1
        assert len(targeted) == 2 * per_block, (name, targeted)  # two blocks in every tiny model
        blocks = {re.search(r"layers?\.(\d+)", key).group(1) for key in targeted}
        assert blocks == {"0", "1"}, (name, targeted)
        if placement == "pfeiffer":
            assert all(re.search(r"layers?\.\d+$", key) for key in targeted), (name, targeted)
        else:
            assert {key.rsplit(".", 1)[-1] for key in targeted} <= EXPECTED_SUFFIXES[placement], (name, targeted)
        # SigLIP's attention-pooling head has its own `mlp.fc2`; it is not a transformer block.
        assert not any(key.startswith("head.") for key in targeted), (name, targeted)
        out = peft_model(pixel_values=pixel_values())
        assert torch.isfinite(out[0]).all()


def test_unknown_model_type_names_it_and_shows_target_modules():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Config", (), {"model_type": "swin", "to_dict": lambda self: {"model_type": "swin"}})()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x)

    with pytest.raises(ValueError) as error:
        get_peft_model(Encoder(), AdapterConfig(bottleneck_size=2))
    message = str(error.value)
    assert "'swin'" in message and "target_modules=" in message


def test_explicit_target_modules_adapt_any_linear_of_any_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 6))
    x = torch.randn(3, 6)
    peft_model = get_peft_model(model, AdapterConfig(bottleneck_size=2, target_modules=["2"], init_weights=False))
    assert peft_model.base_model.targeted_module_names == ["2"]
    with torch.no_grad():
        adapted = peft_model(x)
        with peft_model.disable_adapter():
            base = peft_model(x)
    layer = peft_model.base_model.model[2]
    down, up = layer.bottleneck_down["default"], layer.bottleneck_up["default"]
    torch.testing.assert_close(adapted, base + up(torch.nn.functional.gelu(down(base))))

    regex_model = get_peft_model(
        tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=r".*layers\.1\.attention\.(q|v)_proj")
    )
    assert regex_model.base_model.targeted_module_names == [
        "vit.layers.1.attention.q_proj",
        "vit.layers.1.attention.v_proj",
    ]


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_layers_to_transform(placement):
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, placement=placement, layers_to_transform=[1]))
    targeted = model.base_model.targeted_module_names
    assert targeted and all(".layers.1" in key for key in targeted)


def test_target_matching_nothing_fails_loudly():
    with pytest.raises(ValueError, match="No modules were targeted"):
        get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=["no_such_module"]))
