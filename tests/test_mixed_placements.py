"""Adapters of different placements on one model: each computes what it computes alone, saves the same keys, and
reloads alone or together in any order to the same outputs; mixed batches, deletion, unloading, checkpointing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from tiny_models import one_thread, pixel_values, tiny_vit  # noqa: F401
from transformers import ViTForImageClassification

from hf_vit_adapter import AdapterConfig

PLACEMENTS = ("houlsby", "ffn", "pfeiffer", "parallel", "parallel_ln")
X = pixel_values(batch=4)


def config(placement: str) -> AdapterConfig:
    """Each placement's adapter in these tests; half of them with a learned per-channel scale."""
    return AdapterConfig(
        bottleneck_size=3, placement=placement, scaling="channel" if placement in PLACEMENTS[1::2] else 0.7
    )


def _randomise(model: PeftModel, adapter_name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if f".{adapter_name}." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> dict:
    """One saved adapter per placement, alone on the base, with its logits; and the base's own logits."""
    root = tmp_path_factory.mktemp("singles")
    tiny_vit().save_pretrained(root / "base")
    result = {"base_dir": root / "base"}
    with torch.no_grad():
        result["base"] = tiny_vit()(pixel_values=X).logits
    for seed, placement in enumerate(PLACEMENTS):
        model = get_peft_model(fresh_base(root / "base"), config(placement))
        _randomise(model, "default", seed)
        model.save_pretrained(root / placement)
        with torch.no_grad():
            result[placement] = model.eval()(pixel_values=X).logits
        assert not torch.allclose(result[placement], result["base"])
    return result


def fresh_base(folder: Path) -> ViTForImageClassification:
    return ViTForImageClassification.from_pretrained(folder).eval()


def _logits(model: PeftModel, adapter_name: str) -> torch.Tensor:
    model.set_adapter(adapter_name)
    with torch.no_grad():
        return model(pixel_values=X).logits


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(PLACEMENTS[:4], 2)))
def test_every_ordered_pair_of_placements(singles, tmp_path, first, second):
    # Created on one model: each adapter saves exactly the keys it saves alone.
    model = get_peft_model(fresh_base(singles["base_dir"]), config(first))
    model.add_adapter("other", config(second))
    for name, placement in (("default", first), ("other", second)):
        alone = load_file(singles["base_dir"].parent / placement / "adapter_model.safetensors")
        assert sorted(get_peft_model_state_dict(model, adapter_name=name)) == sorted(alone), (name, placement)

    # Loaded together in this order (the reversed pair loads the other order): each gives its logits alone.
    model = PeftModel.from_pretrained(fresh_base(singles["base_dir"]), singles["base_dir"].parent / first, "one")
    model.load_adapter(singles["base_dir"].parent / second, adapter_name="two")
    model.eval()
    for name, placement in (("one", first), ("two", second), ("one", first)):
        torch.testing.assert_close(_logits(model, name), singles[placement], rtol=0, atol=1e-6)
    with torch.no_grad():
        mixed = model(pixel_values=X, adapter_names=["two", "one", "__base__", "two"]).logits
    for row, expected in enumerate((singles[second], singles[first], singles["base"], singles[second])):
        torch.testing.assert_close(mixed[row], expected[row], rtol=0, atol=1e-6)

    # Saved from the shared model, each file holds exactly what the adapter's own file holds.
    model.save_pretrained(tmp_path)
    for name, placement in (("one", first), ("two", second)):
        saved = load_file(tmp_path / name / "adapter_model.safetensors")
        alone = load_file(singles["base_dir"].parent / placement / "adapter_model.safetensors")
        assert saved.keys() == alone.keys() and all(torch.equal(saved[k], alone[k]) for k in alone), name
    alone = PeftModel.from_pretrained(fresh_base(singles["base_dir"]), tmp_path / "two").eval()
    with torch.no_grad():
        torch.testing.assert_close(alone(pixel_values=X).logits, singles[second], rtol=0, atol=1e-6)


def test_five_adapters_on_one_model(singles):
    """All placements at once: switching, mixed batches over all of them, deleting one, disabling, unloading."""
    model = PeftModel.from_pretrained(fresh_base(singles["base_dir"]), singles["base_dir"].parent / "parallel", "p0")
    for placement in PLACEMENTS:
        if placement != "parallel":
            model.load_adapter(singles["base_dir"].parent / placement, adapter_name=placement)
    model.eval()
    names = {"p0": "parallel", **{p: p for p in PLACEMENTS if p != "parallel"}}
    for name, placement in names.items():
        torch.testing.assert_close(_logits(model, name), singles[placement], rtol=0, atol=1e-6)
    rows = ["pfeiffer", "p0", "houlsby", "__base__"]
    with torch.no_grad():
        mixed = model(pixel_values=X, adapter_names=rows).logits
        rows2 = ["ffn", "parallel_ln", "__base__", "p0"]
        mixed2 = model(pixel_values=X, adapter_names=rows2).logits
    for row, name in enumerate(rows):
        torch.testing.assert_close(mixed[row], singles[names.get(name, "base")][row], rtol=0, atol=1e-6)
    for row, name in enumerate(rows2):
        torch.testing.assert_close(mixed2[row], singles[names.get(name, "base")][row], rtol=0, atol=1e-6)

    model.delete_adapter("houlsby")
    assert not any(".houlsby." in key for key in model.state_dict())
    for name in ("p0", "pfeiffer"):
        torch.testing.assert_close(_logits(model, name), singles[names[name]], rtol=0, atol=1e-6)
    with torch.no_grad(), model.disable_adapter():
        assert torch.equal(model(pixel_values=X).logits, singles["base"])
    unloaded = model.unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in unloaded.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in unloaded.modules())  # our hooks are gone too
    with torch.no_grad():
        assert torch.equal(unloaded(pixel_values=X).logits, singles["base"])


def test_checkpoint_recomputation_uses_the_forwards_adapters(singles):
    """Gradient checkpointing recomputes the block in backward; it must run the adapters the forward ran, even when
    other adapters were activated in between."""

    def gradients(checkpointing: bool) -> dict:
        model = PeftModel.from_pretrained(
            fresh_base(singles["base_dir"]), singles["base_dir"].parent / "parallel", is_trainable=True
        )
        model.load_adapter(singles["base_dir"].parent / "houlsby", adapter_name="other")  # early in each block
        if checkpointing:
            model.base_model.model.gradient_checkpointing_enable()
        model.train()
        loss = model(pixel_values=X, labels=torch.tensor([0, 1, 2, 0])).loss
        for layer in model.modules():  # both adapters active for the backward and its recomputation
            if isinstance(layer, BaseTunerLayer):
                layer.set_adapter(["default", "other"])
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain and plain.keys() == checkpointed.keys()
    assert any(".bottleneck_ffn_parallel.default." in name for name in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_adapters_on_a_module_and_on_its_block_are_refused_before_anything_changes():
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, placement="pfeiffer"))
    before = sorted(model.state_dict())
    with pytest.raises(ValueError, match=r"targets `vit.layers.0.mlp.fc2`, but `vit.layers.0.mlp.fc2` lies inside"):
        model.add_adapter("fc2", AdapterConfig(bottleneck_size=2, target_modules=["fc2"]))
    assert sorted(model.state_dict()) == before and "fc2" not in model.peft_config

    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=["fc2"]))
    with pytest.raises(ValueError, match=r"targets `vit.layers.0`, but `vit.layers.0.mlp.fc2` lies inside"):
        model.add_adapter("block", AdapterConfig(bottleneck_size=2, placement="pfeiffer"))
    with pytest.raises(ValueError, match=r"targets both `vit.layers.0.mlp` and `vit.layers.0.mlp.fc2` inside it"):
        get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=r".*layers\.0\.mlp(\.fc2)?"))


@pytest.mark.parametrize("name", ["__base__", "down", "scale"])
def test_reserved_adapter_names_are_refused(name):
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2))
    with pytest.raises(ValueError, match=f"An adapter cannot be called '{name}'"):
        model.add_adapter(name, AdapterConfig(bottleneck_size=2, placement="ffn"))


def test_mixed_batch_needs_a_list_with_one_name_per_row():
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2)).eval()
    with pytest.raises(TypeError, match="`adapter_names` must be a list with one adapter name per row"):
        model(pixel_values=X, adapter_names="default")
    with pytest.raises(ValueError, match="`adapter_names` has 2 entries but the batch has 4 rows"):
        model(pixel_values=X, adapter_names=["default", "__base__"])
