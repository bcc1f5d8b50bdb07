"""Adapter+ through the training CLI: `--adapter_preset` with flags that override it (given, not default, values win),
`--scaling learned|channel`, `--adapter_drop_path`, `--backbone_drop_path`, learned scales kept out of weight decay,
and one tiny run end to end that reloads with `pipeline` / `from_pretrained` to the trained model's logits."""

from __future__ import annotations

import json

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from tiny_models import pixel_values, tiny_vit
from train_helpers import make_image_folder, make_tiny_vit, one_thread, quick_args, read_json  # noqa: F401
from transformers import (
    AutoModelForImageClassification,
    SwinConfig,
    SwinForImageClassification,
    Trainer,
    TrainingArguments,
    ViTImageProcessor,
    pipeline,
)

import hf_vit_adapter.train as train_module
from hf_vit_adapter import SCALE_PARAMETER_NAME, AdapterConfig
from hf_vit_adapter.stochastic_depth import BranchDropPath
from hf_vit_adapter.train import main
from hf_vit_adapter.training.arguments import parse_args
from hf_vit_adapter.training.trainer import AdapterTrainer


def _config(*flags: str) -> AdapterConfig:
    return parse_args(["--train_dir", "x", "--output_dir", "o", *flags])[2].to_adapter_config()


def test_the_preset_is_adapter_plus_and_every_given_flag_overrides_it(tmp_path):
    assert _config("--adapter_preset", "adapter_plus").to_dict() == AdapterConfig.adapter_plus().to_dict()
    # Flags given at AdapterConfig's own default values still win over the preset: given is not default.
    config = _config(
        "--adapter_preset", "adapter_plus", "--placement", "houlsby", "--scaling", "1.0", "--adapter_drop_path", "0"
    )
    assert (config.placement, config.scaling, config.drop_path) == ("houlsby", 1.0, 0.0)
    assert (config.bottleneck_size, config.init_weights, config.non_linearity) == (8, "houlsby", "gelu")  # preset's
    # Without a preset, AdapterConfig's defaults; --scaling takes a number or a learned mode.
    assert _config().to_dict() == AdapterConfig().to_dict()
    assert [_config("--scaling", value).scaling for value in ("learned", "channel", "0.5")] == [
        "learned",
        "channel",
        0.5,
    ]
    # A config file's value counts as given, and a flag after the file wins over it.
    recipe = tmp_path / "recipe.json"
    settings = {"train_dir": "x", "output_dir": "o", "adapter_preset": "adapter_plus", "bottleneck_size": 2}
    recipe.write_text(json.dumps({**settings, "scaling": 1.0}))
    from_file = parse_args([str(recipe)])[2].to_adapter_config()
    assert (from_file.bottleneck_size, from_file.scaling, from_file.drop_path) == (2, 1.0, 0.1)
    assert parse_args([str(recipe), "--scaling", "learned"])[2].to_adapter_config().scaling == "learned"


def test_bad_adapter_plus_flags_are_one_line_errors(tmp_path, capsys):
    swin = tmp_path / "swin"
    SwinForImageClassification(SwinConfig(image_size=32, embed_dim=16, depths=[1], num_heads=[2])).save_pretrained(
        swin
    )
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(swin)
    capsys.readouterr()
    cases = {
        ("--scaling", "big"): "--scaling must be a number, 'learned' or 'channel', got 'big'.",
        (
            "--adapter_preset",
            "adapter_pls",
        ): "argument --adapter_preset/--adapter-preset: invalid choice: 'adapter_pls'",
        ("--adapter_drop_path", "1"): "`drop_path` must be a number in [0, 1), got 1.0.",
        ("--backbone_drop_path", "1.5"): "--backbone_drop_path must be in [0, 1), got 1.5.",
        ("--model_name_or_path", str(swin), "--backbone_drop_path", "0.1"): (
            "--backbone_drop_path 0.1: Backbone drop-path is not available for swin: its attention runs on windows"
        ),
    }
    for flags, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["--train_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *flags])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(f"hf-vit-adapter-train: error: {message}")
    assert not (tmp_path / "out").exists()


def test_learned_scales_get_no_weight_decay_like_biases(tmp_path):
    model = get_peft_model(tiny_vit(), AdapterConfig.adapter_plus(bottleneck_size=4))
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=1e-4, use_cpu=True, report_to="none")
    trainer = AdapterTrainer(model=model, args=args)
    trainer.create_optimizer()
    trainable = {id(p): (name, p) for name, p in model.named_parameters() if p.requires_grad}
    groups = {
        group["weight_decay"]: {trainable[id(p)][0] for p in group["params"]}
        for group in trainer.optimizer.param_groups
    }
    scales = {name for name, _ in trainable.values() if name.endswith(f".{SCALE_PARAMETER_NAME}")}
    assert len(scales) == 2 and scales <= groups[0.0]
    # Adapter+'s rule (timm's `add_weight_decay`): matrices decay; biases, scales (all 1-D) do not.
    assert groups[1e-4] == {name for name, p in trainable.values() if p.ndim > 1}
    assert groups[0.0] == {name for name, p in trainable.values() if p.ndim == 1}
    assert scales <= set(Trainer.get_decay_parameter_names(trainer, model))  # what Trainer alone would decay


@pytest.fixture(scope="module")
def adapter_plus_run(tmp_path_factory):
    """`hf-vit-adapter-train --adapter_preset adapter_plus --backbone_drop_path 0.1` on a tiny ViT, a few steps; the
    run's Trainer is kept to compare the reloaded adapter with the trained model."""
    root = tmp_path_factory.mktemp("adapter_plus")
    make_tiny_vit(root / "backbone")
    make_image_folder(root / "train", per_class=8)
    make_image_folder(root / "validation", per_class=2, seed=1)
    trainers = []

    class RecordingTrainer(AdapterTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    flags = dict(
        train_dir=str(root / "train"),
        validation_dir=str(root / "validation"),
        adapter_preset="adapter_plus",
        backbone_drop_path="0.1",
        bottleneck_size=None,  # the preset's 8
        weight_decay="0.0001",
        learning_rate="0.01",
        max_steps="4",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "AdapterTrainer", RecordingTrainer)
        main(quick_args(root / "backbone", root / "out", **flags))  # exit code 0: returns, no SystemExit
    return root / "out", trainers[0]


def test_adapter_plus_records_the_values_it_trained_with(adapter_plus_run):
    output_dir, trainer = adapter_plus_run
    config = read_json(output_dir / "adapter_config.json")
    assert (config["placement"], config["scaling"], config["drop_path"]) == ("pfeiffer", "channel", 0.1)
    assert (config["bottleneck_size"], config["init_weights"], config["non_linearity"]) == (8, "houlsby", "gelu")
    card = (output_dir / "README.md").read_text()
    for name, value in {
        "adapter_preset": "adapter_plus",
        "bottleneck_size": "8",
        "placement": "pfeiffer",
        "scaling": "channel",
        "adapter_drop_path": "0.1",
        "backbone_drop_path": "0.1",
        "weight_decay": "0.0001",
    }.items():
        assert f"| `{name}` | {value} |" in card
    # The run's backbone had drop-path 0 -> 0.1 over its 2 blocks, and its scales were kept out of weight decay.
    blocks = [layer.base_layer for layer in trainer.model.base_model.model.vit.layers]
    rates = [
        [hook.rate for hook in block.mlp._forward_hooks.values() if isinstance(hook, BranchDropPath)]
        for block in blocks
    ]
    assert rates == [[], [0.1]]
    no_decay = next(group for group in trainer.optimizer.param_groups if group["weight_decay"] == 0.0)["params"]
    scales = [p for name, p in trainer.model.named_parameters() if name.endswith(f".{SCALE_PARAMETER_NAME}")]
    assert len(scales) == 2 and all(any(p is q for q in no_decay) for p in scales)
    saved = load_file(output_dir / "adapter_model.safetensors")
    saved_scales = [value for key, value in saved.items() if key.endswith(f".{SCALE_PARAMETER_NAME}")]
    assert [tuple(value.shape) for value in saved_scales] == [(32,), (32,)]
    assert all(not torch.equal(value, torch.ones(32)) for value in saved_scales)  # trained


def test_adapter_plus_reloads_to_the_trained_models_logits(adapter_plus_run):
    output_dir, trainer = adapter_plus_run
    x = pixel_values(batch=4)
    with torch.no_grad():
        trained = trainer.model.eval()(pixel_values=x).logits  # the drop-path hooks are still on: identity in eval
        reloaded = AutoModelForImageClassification.from_pretrained(output_dir)(pixel_values=x).logits
        piped = pipeline("image-classification", model=str(output_dir), device="cpu").model(pixel_values=x).logits
    assert torch.equal(reloaded, trained) and torch.equal(piped, trained)
