"""Labels travel with the adapter: a fresh process rebuilds the N-way head and its names from the adapter alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from peft import PeftModel, get_peft_model
from PIL import Image
from tiny_models import IMAGE_SIZE, pixel_values, vit_config
from transformers import AutoModelForImageClassification, ViTForImageClassification, ViTImageProcessor, ViTModel

from hf_vit_adapter import AdapterConfig

NAMES = ["daisy", "rose", "tulip", "iris", "lily"]

FRESH_PROCESS = """
import json, sys
import torch
from PIL import Image
import hf_vit_adapter  # registers the method with PEFT
from transformers import AutoModelForImageClassification, pipeline

adapter_dir, image_path = sys.argv[1], sys.argv[2]
model = AutoModelForImageClassification.from_pretrained(adapter_dir).eval()
classifier = pipeline("image-classification", model=adapter_dir, top_k=None)
pixel_values = classifier.image_processor(Image.open(image_path), return_tensors="pt")["pixel_values"]
with torch.no_grad():
    logits = model(pixel_values=pixel_values).logits[0].tolist()
print(json.dumps({
    "id2label": {str(k): v for k, v in model.config.id2label.items()},
    "logits": logits,
    "pipeline": classifier(Image.open(image_path)),
}))
"""


def _save_base(base_dir, head: str) -> None:
    torch.manual_seed(0)
    if head == "none":  # like google/vit-base-patch16-224-in21k: a backbone with no classification head
        ViTModel(vit_config()).save_pretrained(base_dir)
    else:
        ViTForImageClassification(vit_config(num_labels=7)).save_pretrained(base_dir)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(base_dir)


@pytest.mark.parametrize("head", ["none", "seven_classes"])
def test_fresh_process_restores_head_and_label_names(tmp_path, head):
    base_dir, adapter_dir, image_path = tmp_path / "base", tmp_path / "adapter", tmp_path / "flower.png"
    _save_base(base_dir, head)
    id2label = dict(enumerate(NAMES))
    model = _adapted(base_dir, NAMES, seed=0)
    model.save_pretrained(adapter_dir)

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image_path)
    processor = ViTImageProcessor.from_pretrained(base_dir)
    with torch.no_grad():
        expected = model.eval()(**processor(Image.open(image_path), return_tensors="pt")).logits[0]

    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(adapter_dir), str(image_path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["id2label"] == {str(index): name for index, name in id2label.items()}
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=1e-4, atol=1e-5)
    scores = torch.softmax(expected, dim=-1)
    ranked = sorted(result["pipeline"], key=lambda item: -item["score"])
    assert [item["label"] for item in ranked] == [NAMES[i] for i in torch.argsort(scores, descending=True)]
    assert ranked[0]["score"] == pytest.approx(scores.max().item(), rel=1e-4)


def _adapted(base_dir, names: list[str], seed: int) -> PeftModel:
    """The base with a head for `names` and an adapter; a random head stands in for training."""
    id2label = dict(enumerate(names))
    model = AutoModelForImageClassification.from_pretrained(
        base_dir,
        num_labels=len(names),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        ignore_mismatched_sizes=True,
    )
    torch.manual_seed(seed)
    model = get_peft_model(model, AdapterConfig(bottleneck_size=4, init_weights=False))
    with torch.no_grad():
        model.base_model.model.classifier.modules_to_save["default"].weight.normal_(0, 1.0)
    return model.eval()


def _trained_adapter(base_dir, adapter_dir, names: list[str], seed: int) -> torch.Tensor:
    """Save an adapter with a head for `names`; return its logits on `pixel_values()` for later comparison."""
    model = _adapted(base_dir, names, seed)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values()).logits
    model.save_pretrained(adapter_dir)
    return logits


def test_adapters_with_different_classes_share_one_backbone(tmp_path):
    """One backbone serves a 3-class and a 5-class adapter; the active one decides the head and the label names."""
    base_dir = tmp_path / "base"
    _save_base(base_dir, "none")
    pets = ["cat", "dog", "bird"]
    expected = {
        "pets": _trained_adapter(base_dir, tmp_path / "pets", pets, seed=1),
        "flowers": _trained_adapter(base_dir, tmp_path / "flowers", NAMES, seed=2),
    }

    model = PeftModel.from_pretrained(
        AutoModelForImageClassification.from_pretrained(base_dir), tmp_path / "pets", adapter_name="pets"
    )
    model.load_adapter(tmp_path / "flowers", adapter_name="flowers")
    model.eval()
    for name, names in (("pets", pets), ("flowers", NAMES), ("pets", pets)):
        model.set_adapter(name)
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values=pixel_values()).logits, expected[name])
        assert model.config.id2label == dict(enumerate(names))

    with pytest.raises(ValueError, match="same number of classes, got flowers: 5, pets: 3"):
        model(pixel_values=pixel_values(), adapter_names=["pets", "flowers"])
