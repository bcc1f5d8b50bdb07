"""Loading refuses what does not fit, from every entry point, and reads 0.1.0 adapters with their old meaning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModel, PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from tiny_models import IMAGE_SIZE, TINY, one_thread, pixel_values, tiny_vit  # noqa: F401
from transformers import (
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTForImageClassification,
    ViTForImageClassification,
    ViTImageProcessor,
    pipeline,
)

from hf_vit_adapter import AdapterConfig

FIXTURES_0_1_0 = Path(__file__).parent / "data" / "adapters_0_1_0"


def _save_base(folder: Path, **overrides) -> Path:
    tiny_vit(**overrides).save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def _save_adapter(
    folder: Path, base: Path, config: AdapterConfig, seed: int = 0, model_class=ViTForImageClassification
) -> Path:
    model = get_peft_model(model_class.from_pretrained(base), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.peft_config["default"].base_model_name_or_path = str(base)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strict")
    two, four = _save_base(root / "base2"), _save_base(root / "base4", num_hidden_layers=4)
    good = _save_adapter(root / "good", two, AdapterConfig(bottleneck_size=3, placement="houlsby"))
    deep = _save_adapter(root / "deep", four, AdapterConfig(bottleneck_size=3, placement="ffn"))
    torch.manual_seed(0)
    DeiTForImageClassification(DeiTConfig(**TINY, num_labels=3)).save_pretrained(root / "deit_base")
    deit = _save_adapter(
        root / "deit",
        root / "deit_base",
        AdapterConfig(bottleneck_size=3),
        model_class=AutoModelForImageClassification,
    )
    return {"base2": two, "base4": four, "good": good, "deep": deep, "deit": deit, "root": root}


def _variant(files: dict, name: str, source: str = "good", config=None, weights=None) -> Path:
    """A copy of a saved adapter with its config and/or weights edited."""
    folder = files["root"] / name
    if not folder.exists():
        shutil.copytree(files[source], folder)
        saved = json.loads((folder / "adapter_config.json").read_text())
        if config:
            config(saved)
        (folder / "adapter_config.json").write_text(json.dumps(saved))
        if weights:
            tensors = load_file(folder / "adapter_model.safetensors")
            weights(tensors)
            save_file(tensors, folder / "adapter_model.safetensors")
    return folder


def _peft_model_from_pretrained(adapter: Path, base: Path):
    return PeftModel.from_pretrained(ViTForImageClassification.from_pretrained(base), adapter)


def _peft_load_adapter(adapter: Path, base: Path):
    model = get_peft_model(ViTForImageClassification.from_pretrained(base), AdapterConfig(bottleneck_size=2))
    return model.load_adapter(adapter, adapter_name="second")


def _auto_peft_model(adapter: Path, base: Path):
    return AutoPeftModel.from_pretrained(adapter)


def _auto_model(adapter: Path, base: Path):
    return AutoModelForImageClassification.from_pretrained(adapter)


def _pipeline(adapter: Path, base: Path):
    return pipeline("image-classification", model=str(adapter))


ENTRY_POINTS = [_peft_model_from_pretrained, _peft_load_adapter, _auto_peft_model, _auto_model, _pipeline]


def _point_base(base_key: str):
    def edit(files):
        return lambda saved: saved.update(base_model_name_or_path=str(files[base_key]))

    return edit


CASES = {
    # adapter_config.json edited to another placement: the attention adapters' weights have no place.
    "placement": (
        dict(config=lambda saved: saved.update(placement="pfeiffer")),
        "base2",
        "Likely cause: another placement: the file's adapters sit at ['attention_output', 'ffn_output'], but "
        "placement='pfeiffer' puts them at ['block_output']",
    ),
    # An adapter for 4 blocks onto a 2-block base: half its weights would be ignored.
    "deeper": (dict(source="deep"), "base2", "Likely cause: another depth: the file has adapters in 4 block(s)"),
    # ... and one for 2 blocks onto a 4-block base: half the model's adapters would stay untrained.
    "shallower": (dict(), "base4", "Likely cause: another depth: the file has adapters in 2 block(s)"),
    # An adapter trained on a DeiT, pointed at a ViT of the same size.
    "other_base": (
        dict(source="deit"),
        "base2",
        "Likely cause: another base model: the file's adapters sit in modules",
    ),
    "no_head": (
        dict(weights=lambda t: [t.pop(k) for k in list(t) if ".classifier." in k]),
        "base2",
        "the file has no weights for the classification head 'classifier'",
    ),
    "nan": (
        dict(weights=lambda t: t["base_model.model.vit.layers.1.bottleneck_ffn_output.up.weight"].fill_(float("nan"))),
        "base2",
        "NaN or infinite values in 1 tensor(s), e.g. base_model.model.vit.layers.1.bottleneck_ffn_output.up.weight",
    ),
    "not_adapter_weights": (
        dict(weights=lambda t: t.update({"base_model.model.vit.layernorm.weight": torch.ones(32)})),
        "base2",
        "1 weight(s) of the file have no place in the model, e.g. base_model.model.vit.layernorm.weight",
    ),
}


# `pipeline` and `AutoPeftModel` share their loading code with `AutoModelForImageClassification` / `PeftModel`, so they
# are checked on a few cases only.
LOADER_CASES = [
    pytest.param(case, entry_point, id=f"{entry_point.__name__.strip('_')}-{case}")
    for case in CASES
    for entry_point in ENTRY_POINTS
    if entry_point not in (_pipeline, _auto_peft_model) or case in ("placement", "no_head", "nan")
]


@pytest.mark.parametrize(("case", "entry_point"), LOADER_CASES)
def test_a_file_that_does_not_fit_is_refused_by_every_loader(files, case, entry_point):
    edits, base, message = CASES[case]
    edits = dict(edits)
    original = edits.pop("config", None)
    adapter = _variant(
        files,
        f"{case}_{base}",
        config=lambda saved: (original and original(saved), _point_base(base)(files)(saved)),
        **edits,
    )
    with pytest.raises(ValueError) as error:
        entry_point(adapter, files[base])
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda saved: saved.pop("peft_type"), "adapter_config.json has no `peft_type` field"),
        (
            lambda saved: saved.update(peft_type="BOTTLENEK"),
            "adapter_config.json has an unknown `peft_type` 'BOTTLENEK'",
        ),
        (
            lambda saved: saved.update(id2label={"cat": "a", "1": "b"}),
            "adapter_config.json: `id2label` keys must be class indices (integers), got the key 'cat'",
        ),
        (lambda saved: saved.update(scaling="NaN"), "adapter_config.json: `scaling` must be a finite number"),
    ],
)
@pytest.mark.parametrize("entry_point", [_peft_model_from_pretrained, _auto_model], ids=["peft", "transformers"])
def test_a_bad_adapter_config_names_the_file_and_the_field(files, tmp_path, edit, message, entry_point):
    adapter = shutil.copytree(files["good"], tmp_path / "adapter")
    saved = json.loads((adapter / "adapter_config.json").read_text())
    edit(saved)
    (adapter / "adapter_config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError) as error:
        entry_point(adapter, files["base2"])
    assert str(adapter / "adapter_config.json") in str(error.value) and message in str(error.value)


def test_an_adapter_config_that_is_not_json_is_named(files, tmp_path):
    adapter = shutil.copytree(files["good"], tmp_path / "adapter")
    (adapter / "adapter_config.json").write_text('{"peft_type": "BOTTLENECK",')
    with pytest.raises(ValueError, match=r"adapter_config.json is not valid JSON \(Expecting"):
        PeftConfig.from_pretrained(adapter)
    with pytest.raises(ValueError, match=r"adapter_config.json is not valid JSON"):
        _peft_model_from_pretrained(adapter, files["base2"])
    # transformers reads the file itself (`find_adapter_config_file`, then `json.load`) before PEFT sees it
    for entry_point in (_auto_model, _pipeline):
        with pytest.raises(ValueError) as error:
            entry_point(adapter, files["base2"])
        assert str(error.value).startswith(f"{adapter / 'adapter_config.json'} is not valid JSON (Expecting")


@pytest.mark.parametrize("case", ["houlsby", "pfeiffer", "parallel", "explicit_fc2"])
def test_adapters_saved_by_0_1_0_give_their_old_outputs(case, monkeypatch):
    """Fixtures made by hf-vit-adapter 0.1.0 (tests/data/adapters_0_1_0/make_fixtures.py): old keys are translated,
    and 0.1.0's `parallel` (which read the FFN's input) loads as today's `parallel_ln`."""
    monkeypatch.chdir(FIXTURES_0_1_0)  # their base_model_name_or_path is the relative "base"
    expected = torch.tensor(json.loads((FIXTURES_0_1_0 / "expected.json").read_text())[case])
    peft_model = PeftModel.from_pretrained(ViTForImageClassification.from_pretrained("base"), case).eval()
    transformers_model = AutoModelForImageClassification.from_pretrained(case).eval()
    for model in (peft_model, transformers_model):
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values=pixel_values()).logits, expected, rtol=1e-5, atol=1e-6)
    if case == "parallel":
        assert peft_model.peft_config["default"].placement == "parallel_ln"


def test_0_1_0_adapters_of_different_placements_load_together(monkeypatch):
    """0.1.0 could not hold these two on one model; today they load side by side with their old outputs."""
    monkeypatch.chdir(FIXTURES_0_1_0)
    expected = json.loads((FIXTURES_0_1_0 / "expected.json").read_text())
    model = PeftModel.from_pretrained(ViTForImageClassification.from_pretrained("base"), "pfeiffer", "pfeiffer")
    model.load_adapter("houlsby", adapter_name="houlsby")
    model.eval()
    for name in ("houlsby", "pfeiffer"):
        model.set_adapter(name)
        with torch.no_grad():
            logits = model(pixel_values=pixel_values()).logits
        torch.testing.assert_close(logits, torch.tensor(expected[name]), rtol=1e-5, atol=1e-6)


def test_resuming_a_checkpoint_of_another_placement_is_refused(files, tmp_path):
    """Trainer resumes a PEFT model with `model.load_adapter(checkpoint, "default", is_trainable=True)`: an ffn
    checkpoint into a pfeiffer run must fail, not load 0 of 8 tensors and train on."""
    checkpoint = _save_adapter(
        tmp_path / "checkpoint-5", files["base2"], AdapterConfig(bottleneck_size=3, placement="ffn")
    )
    model = get_peft_model(
        ViTForImageClassification.from_pretrained(files["base2"]),
        AdapterConfig(bottleneck_size=3, placement="pfeiffer"),
    )
    with pytest.raises(ValueError, match=r"another placement: the file's adapters sit at \['ffn_output'\]"):
        model.load_adapter(checkpoint, "default", is_trainable=True)
