"""Blocks resolved per model family, explicit targets, what a target must be, and the unknown-model hint."""

from __future__ import annotations

import re

import pytest
import torch
import transformers as T
from peft import get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from tiny_models import SWIN, family_models, one_thread, pixel_values, tiny_vit  # noqa: F401
from torch import nn

from hf_vit_adapter import AdapterConfig, adapter_sites

SITES = {
    "houlsby": {"attention_output", "ffn_output"},
    "ffn": {"ffn_output"},
    "pfeiffer": {"block_output"},
    "parallel": {"ffn_parallel"},
    "parallel_ln": {"ffn_parallel_ln"},
}
BLOCK = re.compile(r"(?:layers?\.\d+|layers\.\d+\.blocks\.\d+)$")


@pytest.fixture(scope="module")
def families():
    return family_models()


@pytest.mark.parametrize("placement", list(SITES))
def test_every_known_family_is_resolved_to_its_blocks(families, placement):
    for name, model in families.items():
        x = pixel_values()
        with torch.no_grad():
            before = model.eval()(pixel_values=x)[0]
        peft_model = get_peft_model(model, AdapterConfig(bottleneck_size=4, placement=placement)).eval()
        targeted = peft_model.base_model.targeted_module_names
        blocks = 3 if "Swin" in name else 2  # two blocks in every tiny model; Swin: 2 + 1 over two stages
        assert len(targeted) == blocks and all(BLOCK.search(key) for key in targeted), (name, targeted)
        # SigLIP's attention-pooling head has its own `mlp.fc2`; it is not a transformer block.
        assert not any(key.startswith("head.") for key in targeted), (name, targeted)
        sites = adapter_sites(peft_model)
        assert set(sites) == {(i, site) for i in range(blocks) for site in SITES[placement]}, name
        with torch.no_grad():
            after = peft_model(pixel_values=x)[0]
        assert torch.equal(after, before), name  # identity at init (init_weights=True)
        peft_model.base_model.unload()  # the shared models go back untouched for the next placement


def test_full_clip_and_siglip_models_adapt_the_vision_tower_only():
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32)
    for model in (
        T.CLIPModel(T.CLIPConfig(text_config=text, vision_config={**vision, "patch_size": 8})),
        T.SiglipModel(T.SiglipConfig(text_config=text, vision_config={**vision, "patch_size": 8})),
    ):
        targeted = get_peft_model(model, AdapterConfig(bottleneck_size=2)).base_model.targeted_module_names
        assert targeted == [f"vision_model.encoder.layers.{i}" for i in range(2)], targeted


def test_unknown_model_hint_comes_from_its_module_tree_and_works():
    """A Swin-like backbone of an unknown type: the hint names its real blocks and Linear layers, and following it
    adapts exactly what it says (0.1.0 suggested `out_proj`/`layers.N.mlp.fc2`, which this model does not have)."""

    class Config(T.PretrainedConfig):
        model_type = "my_swin"

    class Backbone(nn.Module):
        base_model_prefix = "trunk"

        def __init__(self):
            super().__init__()
            self.config = Config()
            self.trunk = T.SwinModel(T.SwinConfig(**SWIN))

        def forward(self, pixel_values):
            return self.trunk(pixel_values=pixel_values).last_hidden_state

    torch.manual_seed(0)
    with pytest.raises(ValueError) as error:
        get_peft_model(Backbone(), AdapterConfig(bottleneck_size=2))
    message = str(error.value)
    assert "'my_swin'" in message and "attention.o_proj" in message and "mlp.fc2" in message
    assert "out_proj'" not in message
    suggestions = re.findall(r"target_modules=r'([^']+)'", message)
    assert len(suggestions) == 2
    blocks = [f"trunk.encoder.layers.{stage}.blocks.{block}" for stage, block in ((0, 0), (0, 1), (1, 0))]
    for suggestion, expected in zip(suggestions, (blocks, [f"{b}.mlp.fc2" for b in blocks]), strict=True):
        model = get_peft_model(Backbone(), AdapterConfig(bottleneck_size=2, target_modules=suggestion))
        assert sorted(model.base_model.targeted_module_names) == expected
        assert torch.isfinite(model(pixel_values=pixel_values())).all()


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
    bottleneck = peft_model.base_model.model[2].bottleneck_module_output["default"]
    torch.testing.assert_close(adapted, base + bottleneck.up(torch.nn.functional.gelu(bottleneck.down(base))))

    regex_model = get_peft_model(
        tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=r".*layers\.1\.attention\.(q|v)_proj")
    )
    assert regex_model.base_model.targeted_module_names == [
        "vit.layers.1.attention.q_proj",
        "vit.layers.1.attention.v_proj",
    ]


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("layernorm_before", TypeError, "`vit.layers.0.layernorm_before` (LayerNorm) holds no nn.Linear"),
        ("embeddings", TypeError, "`vit.embeddings` (ViTEmbeddings) holds no nn.Linear"),
        ("vit", TypeError, "`vit` (ViTModel) returns BaseModelOutputWithPooling, not a tensor an adapter can add to"),
        ("layers", TypeError, "`vit.layers` is a ModuleList (a list of modules, never called itself)"),
    ],
)
def test_targets_an_adapter_cannot_use_are_refused_when_it_is_created(target, error, message):
    model = tiny_vit()
    with pytest.raises(error) as raised:
        get_peft_model(model, AdapterConfig(bottleneck_size=2, placement="ffn", target_modules=[target]))
    text = str(raised.value)
    assert message in text
    assert "mlp.fc2" in text  # says what to target instead, from this model's own Linear layers
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())  # nothing half-applied


def test_parallel_adapter_needs_equal_input_and_output_widths():
    with pytest.raises(ValueError) as error:
        get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, placement="parallel", target_modules=["fc1"]))
    assert "`vit.layers.0.mlp.fc1` (Linear) would read its 32-wide input and add to its 37-wide output" in str(
        error.value
    )
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, placement="parallel", target_modules=["mlp"]))
    assert torch.isfinite(model(pixel_values=pixel_values()).logits).all()


def test_tuner_layers_expose_in_and_out_features():
    """PEFT's own test battery expects every tuner layer to tell the wrapped module's widths."""
    block = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2)).base_model.model.vit.layers[0]
    assert (block.in_features, block.out_features) == (32, 32)
    fc1 = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=["fc1"])).base_model.model
    assert (fc1.vit.layers[1].mlp.fc1.in_features, fc1.vit.layers[1].mlp.fc1.out_features) == (32, 37)
    swin = get_peft_model(T.SwinModel(T.SwinConfig(**SWIN)), AdapterConfig(bottleneck_size=2)).base_model.model
    assert swin.encoder.layers[1].blocks[0].out_features == 32 and swin.encoder.layers[0].blocks[0].out_features == 16


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_layers_to_transform(placement):
    model = get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, placement=placement, layers_to_transform=[1]))
    targeted = model.base_model.targeted_module_names
    assert targeted == ["vit.layers.1"]
    assert {index for index, _ in adapter_sites(model)} == {1}


@pytest.mark.parametrize(
    ("layers", "targets", "expected"),
    [
        # SWIN: stage 0 holds blocks 0 and 1, stage 1 holds block 2; layers_to_transform counts as adapter_sites does
        ([1], None, ["swin.encoder.layers.0.blocks.1"]),
        (2, None, ["swin.encoder.layers.1.blocks.0"]),
        ([0, 2], ["fc2"], ["swin.encoder.layers.0.blocks.0.mlp.fc2", "swin.encoder.layers.1.blocks.0.mlp.fc2"]),
    ],
)
def test_layers_to_transform_on_swin_counts_blocks_across_stages(layers, targets, expected):
    config = AdapterConfig(bottleneck_size=2, placement="pfeiffer", layers_to_transform=layers, target_modules=targets)
    torch.manual_seed(0)
    model = get_peft_model(T.SwinForImageClassification(T.SwinConfig(**SWIN, num_labels=3)), config)
    assert sorted(model.base_model.targeted_module_names) == expected
    if targets is None:
        assert {index for index, _ in adapter_sites(model)} == ({layers} if isinstance(layers, int) else set(layers))
    assert model(pixel_values=pixel_values()).logits.shape == (2, 3)


def test_layers_pattern_numbers_within_the_named_list():
    """PEFT's meaning, kept when `layers_pattern` is given: on Swin, `layers` are its stages."""
    config = AdapterConfig(bottleneck_size=2, layers_to_transform=[1], layers_pattern="layers")
    model = get_peft_model(T.SwinModel(T.SwinConfig(**SWIN)), config)
    assert model.base_model.targeted_module_names == ["encoder.layers.1.blocks.0"]


def test_target_matching_nothing_fails_loudly():
    with pytest.raises(ValueError, match="No modules were targeted"):
        get_peft_model(tiny_vit(), AdapterConfig(bottleneck_size=2, target_modules=["no_such_module"]))
