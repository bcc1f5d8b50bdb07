"""Learned and per-channel scaling, drop-path on the adapter branch, and Adapter+ against a plain-torch ViT."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from tiny_models import one_thread, pixel_values, tiny_vit  # noqa: F401

from hf_vit_adapter import SCALE_PARAMETER_NAME, AdapterConfig, adapter_sites
from hf_vit_adapter.layer import Bottleneck

D, R = 32, 4


@pytest.mark.parametrize(("scaling", "shape"), [("learned", (1,)), ("channel", (D,))])
def test_learned_scales_start_at_one_train_and_are_saved(tmp_path, scaling, shape):
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=R, placement="houlsby", scaling=scaling))
    scales = {name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == SCALE_PARAMETER_NAME}
    assert len(scales) == 4  # one per site: two per block, two blocks
    assert all(p.shape == shape and torch.equal(p, torch.ones(shape)) and p.requires_grad for p in scales.values())
    per_site = 2 * D * R + R + D + math.prod(shape)
    assert model.get_nb_trainable_parameters()[0] == 4 * per_site + D * 3 + 3  # adapters and the 3-way head

    with torch.no_grad():  # make the adapters non-trivial, so the scale gets a gradient
        for site in adapter_sites(model).values():
            site.up.weight.normal_()
    model.train()
    model(pixel_values=pixel_values(), labels=torch.tensor([0, 2])).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scales.values())

    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert {key for key in saved if key.endswith(f".{SCALE_PARAMETER_NAME}")} == {
        f"base_model.model.vit.layers.{i}.bottleneck_{site}.scale"
        for i in range(2)
        for site in ("attention_output", "ffn_output")
    }


def test_drop_path_is_per_sample_in_training_with_the_right_expectation_and_identity_in_eval():
    torch.manual_seed(0)
    bottleneck = Bottleneck(D, AdapterConfig(bottleneck_size=R, init_weights=False, drop_path=0.25))
    x = torch.randn(4000, 3, D)
    with torch.no_grad():
        full = bottleneck.eval()(x)
        assert torch.equal(bottleneck(x), full)  # eval: exactly the adapter, nothing dropped or rescaled
        dropped = bottleneck.train()(x)
    kept = dropped.flatten(1).abs().sum(1) > 0
    # Each sample keeps its whole adapter output, scaled by 1 / (1 - p), or loses all of it.
    torch.testing.assert_close(dropped[kept], full[kept] / 0.75)
    assert torch.count_nonzero(dropped[~kept]) == 0
    assert abs(kept.float().mean().item() - 0.75) < 0.03  # about 1 - p of the samples keep it
    # The expectation over the mask is the eval output: the mean over many draws for one sample approaches it.
    with torch.no_grad():
        draws = torch.stack([bottleneck(x[:1]) for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), full[:1], rtol=0.1, atol=0.02)


def test_drop_path_in_a_model_changes_training_only():
    config = AdapterConfig(bottleneck_size=R, placement="pfeiffer", init_weights="houlsby", drop_path=0.5)
    model = get_peft_model(tiny_vit(), config)
    plain = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=R, placement="pfeiffer", init_weights="houlsby"))
    plain.load_state_dict(model.state_dict())
    x = pixel_values(batch=8)
    with torch.no_grad():
        assert torch.equal(model.eval()(pixel_values=x).logits, plain.eval()(pixel_values=x).logits)
        torch.manual_seed(0)
        trained = model.train()(pixel_values=x).logits
        reference = plain.train()(pixel_values=x).logits
    assert not torch.allclose(trained, reference)


def _reference_adapter_plus_logits(base, sites: dict, x: torch.Tensor) -> torch.Tensor:
    """A ViT forward in plain torch (from the base's weights), with Adapter+ on each block output:
    `h + s * up(gelu(down(h)))` (drop-path is the identity in eval). Nothing of hf_vit_adapter runs here."""
    config = base.config
    heads, width = config.num_attention_heads, config.hidden_size
    eps = config.layer_norm_eps
    with torch.no_grad():
        h = base.vit.embeddings(x)
        for index, block in enumerate(base.vit.layers):
            attention = block.attention
            y = F.layer_norm(h, (width,), block.layernorm_before.weight, block.layernorm_before.bias, eps)

            def split(t):
                return t.view(t.shape[0], t.shape[1], heads, width // heads).transpose(1, 2)

            q = split(F.linear(y, attention.q_proj.weight, attention.q_proj.bias))
            k = split(F.linear(y, attention.k_proj.weight, attention.k_proj.bias))
            v = split(F.linear(y, attention.v_proj.weight, attention.v_proj.bias))
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1)
            mixed = (weights @ v).transpose(1, 2).reshape(h.shape)
            x1 = h + F.linear(mixed, attention.o_proj.weight, attention.o_proj.bias)
            y = F.layer_norm(x1, (width,), block.layernorm_after.weight, block.layernorm_after.bias, eps)
            mlp = block.mlp
            h = x1 + F.linear(F.gelu(F.linear(y, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
            site = sites[(index, "block_output")]
            adapter = F.linear(F.gelu(F.linear(h, site.down.weight, site.down.bias)), site.up.weight, site.up.bias)
            h = h + site.scale * adapter
        h = F.layer_norm(h, (width,), base.vit.layernorm.weight, base.vit.layernorm.bias, eps)
        return F.linear(h[:, 0], base.classifier.weight, base.classifier.bias)


def test_adapter_plus_matches_a_plain_torch_reference_and_round_trips(tmp_path):
    base = tiny_vit()
    model = get_peft_model(tiny_vit(), AdapterConfig.adapter_plus(bottleneck_size=R))
    sites = adapter_sites(model)
    assert set(sites) == {(0, "block_output"), (1, "block_output")}
    for site in sites.values():  # Adapter+'s init: trunc-normal(0, 0.01) at +-0.02, zero biases, scale ones
        for projection in (site.down, site.up):
            assert projection.weight.abs().max() <= 0.02 and 0.003 < projection.weight.std() < 0.015
            assert torch.count_nonzero(projection.bias) == 0
        assert torch.equal(site.scale, torch.ones(D))
    with torch.no_grad():  # as after training: visible adapters and per-channel scales
        for site in sites.values():
            site.up.weight.normal_(0, 0.3)
            site.scale.uniform_(0.5, 1.5)
    head = model.base_model.model.classifier.modules_to_save["default"]
    base.classifier.load_state_dict(head.state_dict())  # the reference uses the adapter's head
    x = pixel_values()
    with torch.no_grad():
        logits = model.eval()(pixel_values=x).logits
    torch.testing.assert_close(logits, _reference_adapter_plus_logits(base.eval(), sites, x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(logits, base(pixel_values=x).logits)  # the adapters matter

    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_vit(), tmp_path).eval()
    assert reloaded.peft_config["default"].scaling == "channel" and reloaded.peft_config["default"].drop_path == 0.1
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=x).logits, logits)
