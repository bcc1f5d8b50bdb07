"""Loading an adapter with `from_pretrained(adapter_dir)` / `pipeline(model=adapter_dir)`: the base model's expected
load report (the adapter's head MISSING, the pooler or CLIP's text tower UNEXPECTED) becomes one info line; what is
really wrong with the base still shows."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from tiny_models import IMAGE_SIZE, TINY, one_thread, pixel_values, vit_config  # noqa: F401
from transformers import (
    AutoModelForImageClassification,
    CLIPConfig,
    CLIPForImageClassification,
    CLIPModel,
    ViTForImageClassification,
    ViTImageProcessor,
    ViTModel,
    pipeline,
)

from hf_vit_adapter import AdapterConfig

_TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)


def _adapter_on(base: Path, folder: Path, model_class) -> Path:
    """A 3-class adapter with its head, trained (here: drawn) on `base`, saved with an image processor."""
    model = model_class.from_pretrained(base, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    model = get_peft_model(model, AdapterConfig(bottleneck_size=4))
    model.peft_config["default"].base_model_name_or_path = str(base)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Path]:
    """Adapters on bases saved without a head: a ViT backbone (with a pooler), a full CLIP model (with a text tower),
    and a copy of the ViT backbone that lacks a weight of its first block."""
    root = tmp_path_factory.mktemp("load_report")
    torch.manual_seed(0)
    ViTModel(vit_config()).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(root / "vit")  # pipeline's
    CLIPModel(CLIPConfig(vision_config=TINY, text_config=_TEXT)).save_pretrained(root / "clip")
    broken = root / "vit_broken"
    ViTModel(vit_config()).save_pretrained(broken)
    weights = load_file(broken / "model.safetensors")
    del weights["encoder.layer.0.output.dense.weight"]  # saved under the pre-5.9 names
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    return {
        "vit": _adapter_on(root / "vit", root / "vit_adapter", ViTForImageClassification),
        "clip": _adapter_on(root / "clip", root / "clip_adapter", CLIPForImageClassification),
        "broken": _adapter_on(broken, root / "broken_adapter", ViTForImageClassification),
    }


def _load(entry_point: str, adapter: Path):
    if entry_point == "pipeline":
        return pipeline("image-classification", model=str(adapter), device="cpu").model
    return AutoModelForImageClassification.from_pretrained(adapter)


@pytest.mark.parametrize(
    ("case", "entry_point", "unused"),
    [("vit", "from_pretrained", 2), ("vit", "pipeline", 2), ("clip", "from_pretrained", None)],
)
def test_the_expected_report_of_a_base_loaded_for_an_adapter_is_one_info_line(
    adapters, case, entry_point, unused, caplog, transformers_log
):
    with caplog.at_level(logging.INFO, logger="hf_vit_adapter"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _load(entry_point, adapters[case])
    assert not [message for message in transformers_log if "LOAD REPORT" in message]  # its MISSING / UNEXPECTED
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    records = [record for record in caplog.records if record.name.startswith("hf_vit_adapter")]
    assert [record.levelno for record in records] == [logging.INFO]
    message = records[0].getMessage()
    assert message.startswith(f"Loaded {adapters[case].parent / case} with a new 3-way classification head")
    if unused is not None:
        assert f"and {unused} checkpoint weights the classifier does not use" in message  # the pooler's two
    else:
        assert "checkpoint weights the classifier does not use (text tower, pooler)" in message
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    with torch.no_grad():
        assert model(pixel_values=pixel_values()).logits.shape == (2, 3)


def test_a_real_surprise_in_the_base_still_shows(adapters, caplog, transformers_log):
    with caplog.at_level(logging.INFO, logger="hf_vit_adapter"):
        AutoModelForImageClassification.from_pretrained(adapters["broken"])
    assert not [message for message in transformers_log if "LOAD REPORT" in message]
    warnings_ = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings_ == [
        f"Loading {adapters['broken'].parent / 'vit_broken'}: 1 weights were not where the model expects them (e.g. "
        "vit.layers.0.mlp.fc2.weight); is this the checkpoint you meant?"
    ]


def test_loading_the_base_alone_keeps_transformers_report(adapters, transformers_log):
    ViTForImageClassification.from_pretrained(adapters["vit"].parent / "vit", num_labels=3)
    reports = [message for message in transformers_log if "LOAD REPORT" in message]
    assert len(reports) == 1 and "classifier.weight   | MISSING" in reports[0]  # not for an adapter: all of it
