"""The backbone that ships with the package (`hf_vit_adapter.PRETRAINED_BACKBONE`): it loads offline, it is package
data, and it is what its README and `pretraining.json` say: the same file, the same architecture, and, on held-out
fractals regenerated from the recorded seed, about the recorded accuracy."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hf_vit_adapter import PRETRAINED_BACKBONE

ROOT = Path(__file__).resolve().parents[1]
FOLDER = Path(PRETRAINED_BACKBONE)


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((FOLDER / "pretraining.json").read_text())


@pytest.fixture(scope="module")
def model():
    return AutoModelForImageClassification.from_pretrained(PRETRAINED_BACKBONE).eval()


def test_backbone_is_a_small_transformers_folder_inside_the_package(model) -> None:
    assert isinstance(PRETRAINED_BACKBONE, str) and FOLDER.parent == ROOT / "hf_vit_adapter" / "pretrained"
    files = {path.name for path in FOLDER.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "pretraining.json"} <= files
    assert sum(path.stat().st_size for path in FOLDER.iterdir()) <= 15 * 2**20
    processor = AutoImageProcessor.from_pretrained(PRETRAINED_BACKBONE)
    assert processor.size == {"height": model.config.image_size, "width": model.config.image_size}
    # every file of the folder is matched by the package data that `pip install .` copies into the wheel
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["hf_vit_adapter.pretrained"]
    for path in FOLDER.iterdir():
        relative = path.relative_to(FOLDER.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_backbone_is_what_its_readme_says(model, record: dict) -> None:
    digest = hashlib.sha256((FOLDER / "model.safetensors").read_bytes()).hexdigest()
    assert digest == record["model"]["model_safetensors_sha256"]
    readme = (FOLDER / "README.md").read_text()
    assert digest in readme and record["command"] in readme
    assert f"**{record['metrics']['eval_accuracy']:.2%}**" in readme
    assert f"{record['data']['train_images']:,}" in readme and f"seed {record['arguments']['seed']}" in readme
    assert f"{record['time']['training_wall_s']:.0f} s wall clock" in readme
    args = record["arguments"]
    config = model.config
    assert (config.image_size, config.patch_size, config.hidden_size) == (
        args["image_size"],
        args["patch_size"],
        args["hidden_size"],
    )
    assert (config.num_hidden_layers, config.num_labels) == (args["num_hidden_layers"], args["num_categories"])
    assert record["model"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_backbone_recognises_regenerated_held_out_fractals(model, record: dict) -> None:
    """The shipped weights are the trained ones: on held-out instances rendered again from the recorded seed, a
    sample of them is classified about as well as recorded (chance is 1 / number of categories)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pretraining import pretrain

    args = pretrain.PretrainingArguments(**record["arguments"])
    held_out = pretrain.fractal_split(args, pretrain.fractal_categories(args), "validation")
    sample = held_out.select(range(0, len(held_out), 5))  # every 5th image, from every category
    batch = pretrain.collate([sample[i] for i in range(len(sample))])
    with torch.no_grad():
        predictions = model(pixel_values=batch["pixel_values"]).logits.argmax(-1)
    accuracy = (predictions == batch["labels"]).float().mean().item()
    recorded = record["metrics"]["eval_accuracy"]
    assert abs(accuracy - recorded) < 0.1, (accuracy, recorded)
