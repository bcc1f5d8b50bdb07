"""Backbone drop-path (`hf_vit_adapter.stochastic_depth`): exactly the identity in eval, per-sample branch dropping
with 1/keep rescaling in training, timm's linear rate schedule, adapters in either order, gradient checkpointing."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as T
from peft import get_peft_model
from tiny_models import DINOV2, TINY, one_thread, pixel_values, tiny_vit  # noqa: F401

from hf_vit_adapter import AdapterConfig, adapter_sites
from hf_vit_adapter.stochastic_depth import BRANCHES, add_backbone_drop_path

_TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)


def _models() -> dict[str, tuple[torch.nn.Module, str]]:
    """One tiny model per family, with the path of its block list."""
    torch.manual_seed(0)
    return {
        "vit": (T.ViTForImageClassification(T.ViTConfig(**TINY, num_labels=3)), "vit.layers"),
        "deit": (T.DeiTForImageClassification(T.DeiTConfig(**TINY, num_labels=3)), "deit.layers"),
        # layer scale away from 1, so a branch that is not dropped shows it
        "dinov2": (T.Dinov2Model(T.Dinov2Config(**DINOV2, layerscale_value=0.5)), "encoder.layer"),
        "clip": (
            T.CLIPForImageClassification(T.CLIPConfig(vision_config=TINY, text_config=_TEXT, num_labels=3)),
            "vision_model.encoder.layers",
        ),
        "data2vec-vision": (
            T.Data2VecVisionModel(T.Data2VecVisionConfig(**TINY, drop_path_rate=0.0)),
            "encoder.layer",
        ),
    }


def _output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    result = model(pixel_values=x)
    return result.logits if hasattr(result, "logits") else result.last_hidden_state


def _record_branches(blocks, branch_paths) -> tuple[dict, list]:
    """Hooks that record each block's input and output and each branch's output before and after the drop-path."""
    seen, handles = {}, []

    def keep(key):
        def hook(module, args, *rest):
            value = rest[-1] if rest else args[0]
            seen[key] = (value[0] if isinstance(value, tuple) else value).detach().clone()

        return hook

    for index, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(keep(("in", index))))
        handles.append(block.register_forward_hook(keep(("out", index))))
        for path in branch_paths:
            branch = block.get_submodule(path)
            handles.append(branch.register_forward_hook(keep(("raw", index, path)), prepend=True))  # before ours
            handles.append(branch.register_forward_hook(keep(("kept", index, path))))  # after ours
    return seen, handles


def _dropped_rows(seen: dict, index: int, path: str, keep: float) -> torch.Tensor:
    """Which samples lost the branch; checks that every other sample kept all of it, scaled by 1 / keep."""
    raw, kept = seen[("raw", index, path)], seen[("kept", index, path)]
    dropped = kept.flatten(1).abs().sum(1) == 0
    assert torch.count_nonzero(kept[dropped]) == 0
    torch.testing.assert_close(kept[~dropped], raw[~dropped] / keep)
    return dropped


@pytest.mark.parametrize("family", ["vit", "deit", "dinov2", "clip", "data2vec-vision"])
def test_eval_is_exact_and_training_drops_whole_branches_per_sample(family):
    model, blocks_path = _models()[family]
    plain = copy.deepcopy(model)
    assert add_backbone_drop_path(model, 0.5) == [0.0, 0.5]  # 2 blocks: 0 for the first, the rate for the last
    x = pixel_values(batch=64)
    with torch.no_grad():
        assert torch.equal(_output(model.eval(), x), _output(plain.eval(), x))  # eval: bit-exact, nothing dropped

        blocks = list(model.get_submodule(blocks_path))
        branch_paths = BRANCHES[family]
        seen, handles = _record_branches(blocks, branch_paths)
        torch.manual_seed(0)
        _output(model.train(), x)
    for handle in handles:
        handle.remove()
    for path in branch_paths:  # block 0: rate 0, never dropped
        assert not _dropped_rows(seen, 0, path, keep=1.0).any()
    attention, mlp = (_dropped_rows(seen, 1, path, keep=0.5) for path in branch_paths)
    assert 10 < attention.sum() < 54 and 10 < mlp.sum() < 54 and not torch.equal(attention, mlp)  # independent draws
    # A sample that lost both branches leaves the block as it entered: the hooked outputs are the residual branches.
    both = attention & mlp
    assert both.any() and (~both).any()
    assert torch.equal(seen[("out", 1)][both], seen[("in", 1)][both])
    assert not torch.allclose(seen[("out", 1)][~both], seen[("in", 1)][~both])


def test_the_rate_rises_linearly_over_the_blocks_as_in_timm():
    model = tiny_vit(num_hidden_layers=4)
    rates = add_backbone_drop_path(model, 0.3)
    assert rates == pytest.approx([0.3 * i / 3 for i in range(4)])  # timm: drop_path_rate * i / (depth - 1)
    x = pixel_values(batch=600)
    seen, _ = _record_branches(list(model.vit.layers), BRANCHES["vit"])
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()(pixel_values=x)
    for index, rate in enumerate(rates):
        for path in BRANCHES["vit"]:
            fraction = _dropped_rows(seen, index, path, keep=1 - rate).float().mean().item()
            assert abs(fraction - rate) < 0.06, (index, path, fraction)


def test_a_second_call_replaces_the_rates_and_zero_removes_them():
    model, plain = tiny_vit(), tiny_vit()
    add_backbone_drop_path(model, 0.5)
    add_backbone_drop_path(model, 0.2)
    assert [len(block.attention._forward_hooks) for block in model.vit.layers] == [0, 1]
    assert repr(next(iter(model.vit.layers[1].mlp._forward_hooks.values()))) == "BranchDropPath(rate=0.2)"
    add_backbone_drop_path(model, 0.0)
    x = pixel_values(batch=8)
    with torch.no_grad():
        assert torch.equal(model.train()(pixel_values=x).logits, plain.train()(pixel_values=x).logits)


@pytest.mark.parametrize("placement", ["houlsby", "parallel_ln", "pfeiffer", "parallel"])
def test_before_or_after_get_peft_model_gives_the_same_model(placement):
    config = AdapterConfig(bottleneck_size=4, placement=placement, init_weights="houlsby")
    first = tiny_vit()
    add_backbone_drop_path(first, 0.5)
    first = get_peft_model(first, config)
    second = get_peft_model(tiny_vit(), copy.deepcopy(config))
    add_backbone_drop_path(second, 0.5)
    second.load_state_dict(first.state_dict())
    x = pixel_values(batch=16)
    with torch.no_grad():
        outputs = []
        for model in (first, second):
            torch.manual_seed(0)
            outputs.append(model.train()(pixel_values=x).logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_adapters_inside_a_branch_drop_with_it_and_adapters_on_the_stream_stay():
    """houlsby's attention adapter (on the output projection, inside the attention module) goes with the branch;
    Adapter+'s (pfeiffer: the block output) does not: a sample that lost both branches leaves the block as
    `x + s * up(gelu(down(x)))`."""
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=4, placement="houlsby", init_weights="houlsby"))
    model.add_adapter("plus", AdapterConfig.adapter_plus(bottleneck_size=4, drop_path=0.0, modules_to_save=[]))
    model.base_model.set_adapter(["default", "plus"])
    with torch.no_grad():
        for name in ("default", "plus"):
            for site in adapter_sites(model, name).values():
                site.up.bias.normal_()  # an adapter on a zero input would still add its biases
    add_backbone_drop_path(model, 0.5)
    block = model.base_model.model.vit.layers[1]
    seen, _ = _record_branches([block.base_layer], BRANCHES["vit"])
    block.register_forward_hook(lambda module, args, output: seen.__setitem__("block", output))
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()(pixel_values=pixel_values(batch=64))
    attention, mlp = (_dropped_rows(seen, 0, path, keep=0.5) for path in BRANCHES["vit"])
    both = attention & mlp
    assert both.any()
    plus = adapter_sites(model, "plus")[(1, "block_output")]
    x = seen[("in", 0)][both]
    torch.testing.assert_close(seen["block"][both], x + plus.scale * plus.up(torch.nn.functional.gelu(plus.down(x))))


def test_gradient_checkpointing_recomputes_the_same_drops():
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = get_peft_model(tiny_vit(), AdapterConfig.adapter_plus(bottleneck_size=4))
        add_backbone_drop_path(model, 0.5)
        if checkpointing:
            model.gradient_checkpointing_enable()
        torch.manual_seed(0)
        model.train()(pixel_values=pixel_values(batch=8), labels=torch.arange(8) % 3).loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and all(grad.abs().sum() > 0 for grad in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_models_it_cannot_handle_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"not available for swin: its attention runs on windows"):
        add_backbone_drop_path(T.SwinModel(T.SwinConfig(embed_dim=16, depths=[1], num_heads=[2])), 0.1)
    beit = T.BeitModel(T.BeitConfig(**TINY))  # BEiT's default config has drop_path_rate 0.1
    with pytest.raises(ValueError, match=r"already drops paths \(drop probability 0.1 in its blocks"):
        add_backbone_drop_path(beit, 0.1)
    with pytest.raises(ValueError, match=r"does not know the blocks of a model of type 'bert'"):
        add_backbone_drop_path(T.BertModel(T.BertConfig(**_TEXT)), 0.1)
    with pytest.raises(ValueError, match=r"must be a number in \[0, 1\), got 1.0"):
        add_backbone_drop_path(tiny_vit(), 1.0)
