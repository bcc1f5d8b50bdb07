"""`AdapterConfig`: defaults, validation messages and the `adapter_config.json` round trip."""

from __future__ import annotations

import json

import pytest
from peft import PeftConfig
from peft.utils import PeftType

from hf_vit_adapter import AdapterConfig


def test_defaults_and_peft_type():
    config = AdapterConfig()
    assert (config.bottleneck_size, config.placement, config.non_linearity) == (64, "houlsby", "gelu")
    assert (config.scaling, config.dropout, config.init_weights) == (1.0, 0.0, True)
    assert config.peft_type == PeftType.BOTTLENECK == "BOTTLENECK"
    assert isinstance(config, PeftConfig)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bottleneck_size": 0}, "`bottleneck_size` must be an integer >= 1, got 0"),
        ({"bottleneck_size": 2.5}, "`bottleneck_size` must be an integer >= 1, got 2.5"),
        ({"placement": "sideways"}, "`placement` must be one of ('houlsby', 'ffn', 'pfeiffer', 'parallel')"),
        ({"non_linearity": "swishy"}, "`non_linearity` must be a key of transformers.activations.ACT2FN"),
        ({"init_weights": "xavier"}, "`init_weights` must be one of (True, False, 'houlsby', 'bert')"),
        ({"dropout": 1.0}, "`dropout` must be in [0, 1), got 1.0"),
        ({"layers_pattern": "layers"}, "`layers_pattern` only makes sense together with `layers_to_transform`"),
    ],
)
def test_invalid_values_name_the_field_and_allowed_values(kwargs, message):
    with pytest.raises(ValueError) as error:
        AdapterConfig(**kwargs)
    assert message in str(error.value)


def test_unknown_activation_lists_allowed_names():
    with pytest.raises(ValueError, match="quick_gelu"):
        AdapterConfig(non_linearity="nope")


def test_round_trip_through_adapter_config_json(tmp_path):
    config = AdapterConfig(
        bottleneck_size=10,
        placement="ffn",
        non_linearity="relu",
        scaling=0.1,
        dropout=0.1,
        init_weights="houlsby",
        target_modules=["fc2"],
        layers_to_transform=[0, 1],
        id2label={0: "cat", 1: "dog"},
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "BOTTLENECK"
    assert saved["bottleneck_size"] == 10 and saved["placement"] == "ffn"

    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is AdapterConfig
    for field in (
        "bottleneck_size",
        "placement",
        "non_linearity",
        "scaling",
        "dropout",
        "init_weights",
        "target_modules",
        "layers_to_transform",
    ):
        assert getattr(loaded, field) == getattr(config, field), field
    assert loaded.id2label == {0: "cat", 1: "dog"}  # integer keys again after JSON
