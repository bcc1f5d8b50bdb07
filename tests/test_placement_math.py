"""Each placement computes what the README says, checked against forward hooks on an untouched copy of the base."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import transformers as T
from peft import get_peft_model
from tiny_models import TINY, pixel_values, tiny_vit

from hf_vit_adapter import AdapterConfig

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}

# Hand-written module names per placement, independent of the package's own target resolution.
VIT_SITES = {
    "houlsby": [f"vit.layers.{i}.{name}" for i in range(2) for name in ("attention.o_proj", "mlp.fc2")],
    "ffn": [f"vit.layers.{i}.mlp.fc2" for i in range(2)],
    "pfeiffer": [f"vit.layers.{i}" for i in range(2)],
    "parallel": [f"vit.layers.{i}.mlp" for i in range(2)],
}
CLIP_SITES = {
    "houlsby": [f"encoder.layers.{i}.{name}" for i in range(2) for name in ("self_attn.out_proj", "mlp.fc2")],
    "ffn": [f"encoder.layers.{i}.mlp.fc2" for i in range(2)],
    "pfeiffer": [f"encoder.layers.{i}" for i in range(2)],
    "parallel": [f"encoder.layers.{i}.mlp" for i in range(2)],
}


def _adapter_weights(peft_model, site: str) -> tuple[torch.Tensor, ...]:
    layer = peft_model.base_model.model.get_submodule(site)
    down, up = layer.bottleneck_down["default"], layer.bottleneck_up["default"]
    return tuple(t.detach().clone() for t in (down.weight, down.bias, up.weight, up.bias))


def _reference_hook(weights, activation, scaling: float, reads_input: bool):
    w_down, b_down, w_up, b_up = weights

    def adapter(h):
        return scaling * F.linear(activation(F.linear(h, w_down, b_down)), w_up, b_up)

    def hook(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        source = inputs[0] if reads_input else hidden
        hidden = hidden + adapter(source)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.parametrize("placement", ["houlsby", "ffn", "pfeiffer", "parallel"])
@pytest.mark.parametrize(
    ("family", "sites", "non_linearity", "scaling"),
    [("vit", VIT_SITES, "gelu", 0.5), ("clip", CLIP_SITES, "relu", 2.0)],
)
def test_placement_matches_independent_hooks(family, sites, non_linearity, scaling, placement):
    torch.manual_seed(0)
    base = tiny_vit() if family == "vit" else T.CLIPVisionModel(T.CLIPVisionConfig(**TINY)).eval()
    reference = copy.deepcopy(base)
    config = AdapterConfig(
        bottleneck_size=5, placement=placement, non_linearity=non_linearity, scaling=scaling, init_weights=False
    )
    model = get_peft_model(base, config).eval()

    assert sorted(model.base_model.targeted_module_names) == sorted(sites[placement])
    for site in sites[placement]:
        hook = _reference_hook(
            _adapter_weights(model, site), ACTIVATIONS[non_linearity], scaling, reads_input=placement == "parallel"
        )
        reference.get_submodule(site).register_forward_hook(hook)

    x = pixel_values()
    with torch.no_grad():
        expected, actual = _logits(reference(pixel_values=x)), _logits(model(pixel_values=x))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    # The adapter really changed something, so the comparison above is not vacuous.
    with torch.no_grad(), model.disable_adapter():
        assert not torch.allclose(_logits(model(pixel_values=x)), expected)


@pytest.mark.parametrize("placement", ["houlsby", "ffn", "pfeiffer", "parallel"])
@pytest.mark.parametrize("init_weights", [True, "houlsby", "bert"])
def test_init_schemes(placement, init_weights):
    base = tiny_vit()
    x = pixel_values()
    with torch.no_grad():
        before = base(pixel_values=x).logits
    model = get_peft_model(base, AdapterConfig(bottleneck_size=4, placement=placement, init_weights=init_weights))
    with torch.no_grad():
        after = model(pixel_values=x).logits
    layer = model.base_model.model.get_submodule(VIT_SITES[placement][0])
    up = layer.bottleneck_up["default"].weight
    if init_weights is True:
        assert torch.equal(after, before)  # exactly the base model before training
        assert torch.count_nonzero(up) == 0
    else:
        std = 0.01 if init_weights == "houlsby" else 0.02
        assert up.abs().max() <= 2 * std + 1e-7
        assert 0.3 * std < up.std() < 1.5 * std
        assert not torch.equal(after, before)
