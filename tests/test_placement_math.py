"""Each placement computes what the README says, in every model family, checked against forward hooks that a test
writes by hand on an untouched copy of the base (module names below are typed here, not taken from the package)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import transformers as T
from peft import get_peft_model
from tiny_models import DINOV2, SWIN, TINY, one_thread, pixel_values, tiny_vit  # noqa: F401

from hf_vit_adapter import AdapterConfig, adapter_sites

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
PLACEMENTS = ("houlsby", "ffn", "pfeiffer", "parallel", "parallel_ln")


@dataclass
class Family:
    """Where things are in one block of a family: hand-written, independent of `hf_vit_adapter.targets`."""

    build: object
    blocks: list[str]
    attention_output: str
    fc2: str
    stream: str  # its input is the stream before the FFN's LayerNorm (AdaptFormer's parallel reads it)
    ffn_in: str  # its input is the FFN's input
    ffn_out: str  # its output is the FFN's output


def _seeded(build):
    def make():
        torch.manual_seed(0)
        return build().eval()

    return make


FAMILIES = {
    "vit": Family(
        _seeded(lambda: tiny_vit()),
        [f"vit.layers.{i}" for i in range(2)],
        "attention.o_proj",
        "mlp.fc2",
        "layernorm_after",
        "mlp",
        "mlp",
    ),
    "clip": Family(
        _seeded(lambda: T.CLIPVisionModel(T.CLIPVisionConfig(**TINY))),
        [f"encoder.layers.{i}" for i in range(2)],
        "self_attn.out_proj",
        "mlp.fc2",
        "layer_norm2",
        "mlp",
        "mlp",
    ),
    "dinov2": Family(
        _seeded(lambda: T.Dinov2Model(T.Dinov2Config(**DINOV2))),
        [f"encoder.layer.{i}" for i in range(2)],
        "attention.o_proj",
        "mlp.fc2",
        "norm2",
        "mlp",
        "mlp",
    ),
    "beit": Family(  # layer scale: lambda_1, lambda_2 multiply each branch
        _seeded(lambda: T.BeitForImageClassification(T.BeitConfig(**TINY, num_labels=3))),
        [f"beit.layers.{i}" for i in range(2)],
        "attention.o_proj",
        "mlp.fc2",
        "layernorm_after",
        "mlp",
        "mlp",
    ),
    "data2vec": Family(
        _seeded(lambda: T.Data2VecVisionForImageClassification(T.Data2VecVisionConfig(**TINY, num_labels=3))),
        [f"data2vec_vision.encoder.layer.{i}" for i in range(2)],
        "attention.output.dense",
        "output.dense",
        "layernorm_after",
        "intermediate",
        "output",
    ),
    "swin": Family(
        _seeded(lambda: T.SwinForImageClassification(T.SwinConfig(**SWIN, num_labels=3))),
        ["swin.encoder.layers.0.blocks.0", "swin.encoder.layers.0.blocks.1", "swin.encoder.layers.1.blocks.0"],
        "attention.o_proj",
        "mlp.fc2",
        "layernorm_after",
        "mlp",
        "mlp",
    ),
    "swinv2": Family(  # res-post-norm: the FFN reads the stream directly and is normalised after
        _seeded(lambda: T.Swinv2ForImageClassification(T.Swinv2Config(**SWIN, num_labels=3))),
        ["swinv2.encoder.layers.0.blocks.0", "swinv2.encoder.layers.0.blocks.1", "swinv2.encoder.layers.1.blocks.0"],
        "attention.output.dense",
        "output.dense",
        "intermediate",
        "intermediate",
        "output",
    ),
}


def _adapter(site, activation, scaling):
    """A plain-torch copy of one adapter: `s * up(act(down(h)))`."""
    w_down, b_down = site.down.weight.detach().clone(), site.down.bias.detach().clone()
    w_up, b_up = site.up.weight.detach().clone(), site.up.bias.detach().clone()
    scale = site.scale.detach().clone() if site.scale is not None else scaling
    return lambda h: scale * F.linear(activation(F.linear(h, w_down, b_down)), w_up, b_up)


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def install_reference(reference, family: Family, sites, activation, scaling) -> None:
    """Hooks on the untouched copy that compute each adapter site by hand."""
    for (index, site), weights in sites.items():
        block = reference.get_submodule(family.blocks[index])
        adapter = _adapter(weights, activation, scaling)
        if site in ("attention_output", "ffn_output", "block_output"):
            module = {"attention_output": family.attention_output, "ffn_output": family.fc2, "block_output": ""}[site]
            target = block.get_submodule(module) if module else block
            target.register_forward_hook(
                lambda m, args, out, adapter=adapter: _replace_hidden(out, _hidden(out) + adapter(_hidden(out)))
            )
        else:
            reader, writer = (
                (block.get_submodule(family.stream), block)
                if site == "ffn_parallel"
                else (block.get_submodule(family.ffn_in), block.get_submodule(family.ffn_out))
            )
            stash = {}
            reader.register_forward_pre_hook(lambda m, args, stash=stash: stash.__setitem__("x", args[0]))
            writer.register_forward_hook(
                lambda m, args, out, adapter=adapter, stash=stash: _replace_hidden(
                    out, _hidden(out) + adapter(stash["x"])
                )
            )


EXPECTED_SITES = {
    "houlsby": {"attention_output", "ffn_output"},
    "ffn": {"ffn_output"},
    "pfeiffer": {"block_output"},
    "parallel": {"ffn_parallel"},
    "parallel_ln": {"ffn_parallel_ln"},
}


def _output(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_placements_match_hand_written_hooks(family_name):
    """Every placement in every family: adapters with random weights against a hand-written reference."""
    family = FAMILIES[family_name]
    base = family.build()
    x = pixel_values()
    with torch.no_grad():
        base_output = _output(base(pixel_values=x))
    settings = [("gelu", 0.5), ("relu", 2.0), ("silu", 1.0), ("gelu", 1.0), ("relu", 0.5)]
    for placement, (activation, scaling) in zip(PLACEMENTS, settings, strict=True):
        reference = copy.deepcopy(base)
        config = AdapterConfig(
            bottleneck_size=5, placement=placement, non_linearity=activation, scaling=scaling, init_weights=False
        )
        model = get_peft_model(copy.deepcopy(base), config).eval()
        assert sorted(model.base_model.targeted_module_names) == family.blocks
        sites = adapter_sites(model)
        assert set(sites) == {(i, site) for i in range(len(family.blocks)) for site in EXPECTED_SITES[placement]}
        install_reference(reference, family, sites, ACTIVATIONS[activation], scaling)
        with torch.no_grad():
            expected, actual = _output(reference(pixel_values=x)), _output(model(pixel_values=x))
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=f"{family_name} {placement}")
        assert not torch.allclose(actual, base_output), (family_name, placement)  # the comparison is not vacuous


@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_identity_at_init_and_exact_reload(family_name, tmp_path):
    """Adapters start as the identity; a trained (random) mix of placements reloads to the same outputs."""
    from peft import PeftModel

    family = FAMILIES[family_name]
    base = family.build()
    x = pixel_values()
    with torch.no_grad():
        before = _output(base(pixel_values=x))
    model = get_peft_model(copy.deepcopy(base), AdapterConfig(bottleneck_size=4, placement="houlsby"))
    for placement in PLACEMENTS[2:]:
        model.add_adapter(placement, AdapterConfig(bottleneck_size=4, placement=placement))
    for name in ("default", *PLACEMENTS[2:]):
        model.set_adapter(name)
        with torch.no_grad():
            assert torch.equal(_output(model(pixel_values=x)), before), (family_name, name)

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if "bottleneck_" in key:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.set_adapter("parallel")
    with torch.no_grad():
        expected = _output(model(pixel_values=x))
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "parallel").eval()
    with torch.no_grad():
        assert torch.equal(_output(reloaded(pixel_values=x)), expected)
        assert not torch.allclose(expected, before)


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer", "parallel"])
@pytest.mark.parametrize("init_weights", [True, "houlsby", "bert"])
def test_init_schemes(placement, init_weights):
    base = tiny_vit()
    x = pixel_values()
    with torch.no_grad():
        before = base(pixel_values=x).logits
    model = get_peft_model(base, AdapterConfig(bottleneck_size=4, placement=placement, init_weights=init_weights))
    with torch.no_grad():
        after = model(pixel_values=x).logits
    up = next(iter(adapter_sites(model).values())).up.weight
    if init_weights is True:
        assert torch.equal(after, before)  # exactly the base model before training
        assert torch.count_nonzero(up) == 0
    else:
        std = 0.01 if init_weights == "houlsby" else 0.02
        assert up.abs().max() <= 2 * std + 1e-7
        assert 0.3 * std < up.std() < 1.5 * std
        assert not torch.equal(after, before)


def test_adapter_sites_write_the_weights_the_forward_uses():
    """The converter's helper: writing through a Site sets that block's adapter, and only that one."""
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=3, placement="houlsby", scaling="learned")).eval()
    sites = adapter_sites(model)
    assert set(sites) == {(i, s) for i in range(2) for s in ("attention_output", "ffn_output")}
    site = sites[(1, "ffn_output")]
    assert (site.down.in_features, site.down.out_features, tuple(site.scale.shape)) == (32, 3, (1,))
    with torch.no_grad():
        site.up.weight.normal_()
        site.scale.fill_(0.5)
    seen = {}
    for index in range(2):
        block = model.base_model.model.vit.layers[index].base_layer
        block.mlp.fc2.register_forward_pre_hook(lambda m, args, i=index: seen.__setitem__(("in", i), args[0]))
        block.mlp.register_forward_hook(lambda m, args, out, i=index: seen.__setitem__(("out", i), out))
    with torch.no_grad():
        model(pixel_values=pixel_values())
        fc2 = [model.base_model.model.vit.layers[i].base_layer.mlp.fc2 for i in range(2)]
        plain = [F.linear(seen[("in", i)], fc2[i].weight, fc2[i].bias) for i in range(2)]
        expected = plain[1] + 0.5 * site.up(F.gelu(site.down(plain[1])))
    torch.testing.assert_close(seen[("out", 1)], expected)
    assert not torch.allclose(seen[("out", 1)], plain[1])
    torch.testing.assert_close(seen[("out", 0)], plain[0])  # block 0's adapter still has a zero up-projection
    assert adapter_sites(model, "missing") == {}
