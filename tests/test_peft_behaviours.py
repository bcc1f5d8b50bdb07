"""The PEFT behaviours users rely on, exercised on a tiny ViT with bottleneck adapters."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import AutoPeftModel, PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from tiny_models import one_thread, pixel_values, tiny_vit  # noqa: F401
from transformers import ViTForImageClassification

from hf_vit_adapter import AdapterConfig, adapter_sites

D, R, BLOCKS, LABELS = 32, 4, 2, 3


def _randomised(model: PeftModel, adapter_name: str = "default", seed: int = 0) -> PeftModel:
    """Give the adapter and its head random weights, as training would, so outputs differ from the base."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if f".{adapter_name}." in name or name.endswith(f".{adapter_name}"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def _adapted(placement: str = "houlsby", **kwargs) -> PeftModel:
    return _randomised(get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=R, placement=placement, **kwargs)))


def test_only_adapters_and_head_train(capsys):
    model = _adapted()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("bottleneck_" in name or ".classifier.modules_to_save." in name for name in trainable)
    adapter_params = BLOCKS * 2 * (D * R + R + R * D + D)  # houlsby: two adapters per block
    head_params = D * LABELS + LABELS
    assert model.get_nb_trainable_parameters()[0] == adapter_params + head_params
    model.print_trainable_parameters()
    assert f"trainable params: {adapter_params + head_params:,}" in capsys.readouterr().out


def test_forward_backward_reaches_only_trainable_parameters():
    model = _adapted().train()
    loss = model(pixel_values=pixel_values(), labels=torch.tensor([0, 2])).loss
    loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


def test_save_pretrained_writes_only_the_adapter(tmp_path):
    model = _adapted()
    model.save_pretrained(tmp_path)
    # PEFT's save_pretrained also writes its model card (README.md); nothing else, no pickle, no base weights.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert all("bottleneck_" in key or key.startswith("base_model.model.classifier.") for key in weights)
    assert sum(t.numel() for t in weights.values()) == model.get_nb_trainable_parameters()[0]


def test_loading_reproduces_outputs_exactly(tmp_path):
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    tiny_vit().save_pretrained(base_dir)
    model = _randomised(
        get_peft_model(ViTForImageClassification.from_pretrained(base_dir), AdapterConfig(bottleneck_size=R))
    ).eval()
    x = pixel_values()
    with torch.no_grad():
        expected = model(pixel_values=x).logits
    model.save_pretrained(adapter_dir)

    assert type(PeftConfig.from_pretrained(adapter_dir)) is AdapterConfig
    reloaded = PeftModel.from_pretrained(ViTForImageClassification.from_pretrained(base_dir), adapter_dir)
    auto = AutoPeftModel.from_pretrained(adapter_dir)
    for loaded in (reloaded, auto):
        with torch.no_grad():
            assert torch.equal(loaded.eval()(pixel_values=x).logits, expected)


def test_named_adapters_switch_disable_delete_and_load(tmp_path):
    model = _adapted()
    model.add_adapter("other", AdapterConfig(bottleneck_size=R, placement="ffn"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(".other." in name for name in trainable)  # an added adapter waits its turn
    _randomised(model, "other", seed=1)
    x = pixel_values()
    with torch.no_grad():
        base = copy.deepcopy(model).base_model.unload()(pixel_values=x).logits
        first = model(pixel_values=x).logits
        model.set_adapter("other")
        other = model(pixel_values=x).logits
        with model.disable_adapter():
            disabled = model(pixel_values=x).logits
    assert model.active_adapters == ["other"]
    model.set_adapter("other")  # trainable now, and the first adapter no longer
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".other." in name or name.endswith(".other") for name in trainable), trainable
    assert not torch.allclose(first, other) and not torch.allclose(first, base)
    assert torch.equal(disabled, base)

    model.save_pretrained(tmp_path)  # writes each adapter; "other" lands in a subfolder
    model.delete_adapter("other")
    assert "other" not in model.peft_config
    assert not any(".other." in name for name, _ in model.named_parameters())
    model.load_adapter(tmp_path / "other", adapter_name="other_again")
    model.set_adapter("other_again")
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, other)


def test_mixed_batch_inference_matches_each_adapter_alone():
    model = _adapted()
    model.add_adapter("second", AdapterConfig(bottleneck_size=R, placement="parallel"))
    _randomised(model, "second", seed=3)
    model.eval()
    x = pixel_values(batch=4)
    names = ["default", "second", "__base__", "default"]
    with torch.no_grad():
        mixed = model(pixel_values=x, adapter_names=names).logits
        alone = {}
        for name in ("default", "second"):
            model.set_adapter(name)
            alone[name] = model(pixel_values=x).logits
        with model.disable_adapter():
            alone["__base__"] = model(pixel_values=x).logits
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], alone[name][row], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(alone["default"], alone["second"])

    with pytest.raises(ValueError, match="non-existing adapter"):
        model(pixel_values=x, adapter_names=["default", "typo", "__base__", "default"])


def test_merge_is_refused_and_unload_returns_the_base():
    base = tiny_vit()
    x = pixel_values()
    with torch.no_grad():
        expected = base(pixel_values=x).logits
    model = _randomised(get_peft_model(copy.deepcopy(base), AdapterConfig(bottleneck_size=R, placement="houlsby")))
    model.add_adapter("block", AdapterConfig(bottleneck_size=R, placement="pfeiffer"))
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_and_unload()
    unloaded = model.unload()
    assert type(unloaded) is ViTForImageClassification
    assert not any(isinstance(m, BaseTunerLayer) for m in unloaded.modules())
    assert not any("bottleneck_" in name for name, _ in unloaded.named_parameters())
    with torch.no_grad():
        assert torch.equal(unloaded(pixel_values=x).logits, expected)


@pytest.mark.parametrize(
    ("placement", "reentrant"), [("houlsby", False), ("pfeiffer", False), ("parallel", False), ("parallel", True)]
)
def test_gradient_checkpointing_gives_the_same_gradients(placement, reentrant):
    """`parallel` stashes the stream before the FFN's LayerNorm and uses it at the block output: both must happen in
    the checkpointed run, or the reentrant variant (whose first pass runs without grad) loses gradients."""
    grads = []
    for checkpointing in (False, True):
        model = _adapted(placement)
        if checkpointing:
            model.base_model.model.gradient_checkpointing_enable({"use_reentrant": reentrant})
        model.train()
        x = pixel_values().requires_grad_(reentrant)  # the reentrant checkpoint needs an input that requires grad
        model(pixel_values=x, labels=torch.tensor([1, 2])).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)


def test_torch_compile_matches_eager():
    """Inductor (the default backend) for inference and for a training step, on a block holding two placements."""
    model = _adapted("pfeiffer")
    model.add_adapter("side", AdapterConfig(bottleneck_size=R, placement="parallel"))
    _randomised(model, "side", seed=2)
    model.set_adapter("side")
    model.eval()
    x, labels = pixel_values(), torch.tensor([0, 1])
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(pixel_values=x).logits, model(pixel_values=x).logits)

    model.train()
    model(pixel_values=x, labels=labels).loss.backward()
    eager = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    compiled(pixel_values=x, labels=labels).loss.backward()
    for name, grad in eager.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_base_models(dtype):
    reference = _adapted("houlsby").eval()
    x = pixel_values()
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
    half = copy.deepcopy(reference).to(dtype).eval()
    with torch.no_grad():
        logits = half(pixel_values=x.to(dtype)).logits
    assert logits.dtype == dtype
    torch.testing.assert_close(logits.float(), expected, rtol=0.05, atol=0.05)

    fresh = get_peft_model(tiny_vit().to(dtype), AdapterConfig(bottleneck_size=R)).train()
    up = adapter_sites(fresh)[(0, "ffn_output")].up.weight
    assert up.dtype == torch.float32  # PEFT keeps trainable adapter weights in float32 for stable training
    loss = fresh(pixel_values=x.to(dtype), labels=torch.tensor([0, 1])).loss
    loss.backward()
    assert torch.isfinite(up.grad).all() and up.grad.abs().sum() > 0  # (down's grad is 0 while up is zero)


def test_adapter_for_another_width_fails_loudly(tmp_path):
    _adapted().save_pretrained(tmp_path)
    wider = tiny_vit(hidden_size=48, intermediate_size=40)
    with pytest.raises(RuntimeError, match="size mismatch"):
        PeftModel.from_pretrained(wider, tmp_path)
