"""`AdapterConfig`: defaults, validation messages, the Adapter+ preset and the `adapter_config.json` round trip."""

from __future__ import annotations

import json
import math

import pytest
from peft import PeftConfig
from peft.utils import PeftType

from hf_vit_adapter import FORMAT_VERSION, AdapterConfig


def test_defaults_and_peft_type():
    config = AdapterConfig()
    assert (config.bottleneck_size, config.placement, config.non_linearity) == (64, "houlsby", "gelu")
    assert (config.scaling, config.dropout, config.drop_path, config.init_weights) == (1.0, 0.0, 0.0, True)
    assert config.peft_type == PeftType.BOTTLENECK == "BOTTLENECK"
    assert config.format_version == FORMAT_VERSION == 2
    assert isinstance(config, PeftConfig)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bottleneck_size": 0}, "`bottleneck_size` must be an integer >= 1, got 0"),
        ({"bottleneck_size": 2.5}, "`bottleneck_size` must be an integer >= 1, got 2.5"),
        ({"bottleneck_size": True}, "`bottleneck_size` must be an integer >= 1, got True"),
        ({"placement": "up"}, "`placement` must be one of ('houlsby', 'ffn', 'pfeiffer', 'parallel', 'parallel_ln')"),
        ({"non_linearity": "swishy"}, "`non_linearity` must be a key of transformers.activations.ACT2FN"),
        ({"non_linearity": None}, "`non_linearity` must be a key of transformers.activations.ACT2FN, got None"),
        ({"init_weights": "xavier"}, "`init_weights` must be one of (True, False, 'houlsby', 'bert')"),
        ({"scaling": math.nan}, "`scaling` must be a finite number or one of ('learned', 'channel'), got nan"),
        ({"scaling": math.inf}, "`scaling` must be a finite number or one of ('learned', 'channel'), got inf"),
        ({"scaling": "2"}, "got '2' (a string; pass the number itself)"),
        ({"scaling": None}, "`scaling` must be a finite number or one of ('learned', 'channel'), got None"),
        ({"scaling": True}, "`scaling` must be a finite number or one of ('learned', 'channel'), got True"),
        ({"dropout": 1.0}, "`dropout` must be a number in [0, 1), got 1.0"),
        ({"dropout": "0.1"}, "`dropout` must be a number in [0, 1), got '0.1'"),
        ({"dropout": None}, "`dropout` must be a number in [0, 1), got None"),
        ({"dropout": math.nan}, "`dropout` must be a number in [0, 1), got nan"),
        ({"drop_path": -0.1}, "`drop_path` must be a number in [0, 1), got -0.1"),
        ({"drop_path": 1}, "`drop_path` must be a number in [0, 1), got 1"),
        ({"target_modules": []}, "`target_modules` must be None, a regex string, or a non-empty list of module"),
        ({"target_modules": [3]}, "`target_modules` must be None, a regex string, or a non-empty list of module"),
        ({"target_modules": "(fc2"}, "`target_modules` '(fc2' is not a valid regular expression"),
        ({"layers_to_transform": "1"}, "`layers_to_transform` must be a block index (an integer >= 0) or a list"),
        ({"layers_to_transform": [0, -1]}, "`layers_to_transform` must be a block index (an integer >= 0) or a list"),
        ({"layers_to_transform": [True]}, "`layers_to_transform` must be a block index (an integer >= 0) or a list"),
        ({"layers_pattern": "layers"}, "`layers_pattern` only makes sense together with `layers_to_transform`"),
        ({"layers_pattern": 3, "layers_to_transform": 0}, "`layers_pattern` must be a list of module names"),
        ({"modules_to_save": "classifier"}, "`modules_to_save` must be a list of module names, e.g. ['classifier']"),
        ({"id2label": {0: "a", "0": "b"}}, "`id2label` names class 0 twice ('a' and 'b')"),
        ({"id2label": {5: "a"}}, "`id2label` must name the classes 0..0, each once; got the indices [5]"),
        ({"id2label": {0: "a", 2: "c"}}, "`id2label` must name the classes 0..1, each once; got the indices [0, 2]"),
        ({"id2label": {"cat": "a"}}, "`id2label` keys must be class indices (integers), got the key 'cat'"),
        ({"id2label": {0: 7}}, "`id2label` names must be strings, got 7 for class 0"),
        ({"id2label": ["a", "b"]}, "`id2label` must be a non-empty dict from class index to name"),
        ({"format_version": 3}, "`format_version` 3 is newer than this hf-vit-adapter understands (2)"),
    ],
)
def test_invalid_values_name_the_field_the_value_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError) as error:
        AdapterConfig(**kwargs)
    assert message in str(error.value)


def test_unknown_activation_lists_allowed_names():
    with pytest.raises(ValueError, match="quick_gelu"):
        AdapterConfig(non_linearity="nope")


def test_numbers_and_labels_are_normalised():
    config = AdapterConfig(scaling=2, dropout=0, id2label={"1": "dog", 0: "cat"}, target_modules=["fc2", "o_proj"])
    assert config.scaling == 2.0 and isinstance(config.scaling, float) and config.dropout == 0.0
    assert config.id2label == {0: "cat", 1: "dog"} and list(config.id2label) == [0, 1]
    assert config.target_modules == {"fc2", "o_proj"}
    assert AdapterConfig(scaling="learned").scaling == "learned"
    assert AdapterConfig(scaling="channel").scaling == "channel"


def test_adapter_plus_preset():
    """Adapter+ as visinf/adapter_plus (conf/adapter/adapter_plus.yaml on base_adapter.yaml) and AdapterHub's
    AdapterPlusConfig define it: post-block adapter, GELU, channel scaling, Houlsby init, drop-path 0.1, no dropout."""
    config = AdapterConfig.adapter_plus()
    assert (config.placement, config.bottleneck_size, config.non_linearity) == ("pfeiffer", 8, "gelu")
    assert (config.scaling, config.init_weights, config.drop_path, config.dropout) == ("channel", "houlsby", 0.1, 0.0)
    custom = AdapterConfig.adapter_plus(bottleneck_size=2, drop_path=0.0, target_modules=["fc2"])
    assert (custom.bottleneck_size, custom.drop_path, custom.target_modules) == (2, 0.0, {"fc2"})
    with pytest.raises(ValueError, match="`drop_path` must be a number in"):
        AdapterConfig.adapter_plus(drop_path=2)


def test_round_trip_through_adapter_config_json(tmp_path):
    config = AdapterConfig(
        bottleneck_size=10,
        placement="ffn",
        non_linearity="relu",
        scaling="channel",
        dropout=0.1,
        drop_path=0.2,
        init_weights="houlsby",
        target_modules=["fc2"],
        layers_to_transform=[0, 1],
        id2label={0: "cat", 1: "dog"},
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "BOTTLENECK" and saved["format_version"] == 2
    assert saved["bottleneck_size"] == 10 and saved["placement"] == "ffn" and saved["scaling"] == "channel"

    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is AdapterConfig
    for field in (
        "bottleneck_size",
        "placement",
        "non_linearity",
        "scaling",
        "dropout",
        "drop_path",
        "init_weights",
        "target_modules",
        "layers_to_transform",
        "format_version",
    ):
        assert getattr(loaded, field) == getattr(config, field), field
    assert loaded.id2label == {0: "cat", 1: "dog"}  # integer keys again after JSON


def test_config_of_0_1_0_is_read_with_its_meaning(tmp_path):
    """0.1.0 wrote no format_version and, for resolved targets, its own regex; its parallel is today's parallel_ln."""
    old = {
        "peft_type": "BOTTLENECK",
        "bottleneck_size": 4,
        "placement": "parallel",
        "target_modules": r"(?:.*\.)?layers\.\d+\.(?:base_layer\.)?mlp",
    }
    (tmp_path / "adapter_config.json").write_text(json.dumps(old))
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert (loaded.placement, loaded.target_modules, loaded.format_version) == ("parallel_ln", None, 2)
    explicit = AdapterConfig(placement="parallel", target_modules=["mlp"])  # explicit targets keep their meaning
    assert (explicit.placement, explicit.target_modules) == ("parallel", {"mlp"})
    current = AdapterConfig(placement="parallel", format_version=2, target_modules=old["target_modules"])
    assert current.placement == "parallel"  # a file that says it is today's format is taken as it is


def test_the_package_is_typed():
    """PEP 561: `py.typed` ships as package data, so type checkers read the annotations of installed copies."""
    from importlib import resources
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["hf_vit_adapter"]
    assert resources.files("hf_vit_adapter").joinpath("py.typed").is_file()
