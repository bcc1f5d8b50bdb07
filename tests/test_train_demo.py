"""The offline demo (`python -m hf_vit_adapter.demo`), shortened: real digits, the shipped pretrained backbone through
the training CLI, a linear probe on the same split, no network, and a pipeline prediction on the adapter it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hf_vit_adapter import PRETRAINED_BACKBONE, demo


def test_demo_trains_on_the_shipped_backbone_beside_a_linear_probe(tmp_path: Path, capsys):
    threads = torch.get_num_threads()
    try:
        # 3 labelled digits per class and 2 epochs keep the test short; the demo runs 10 per class for 30 epochs
        metrics = demo.main(["--workdir", str(tmp_path), "--labels_per_class", "3", "--num_train_epochs", "2"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    digits = tmp_path / "digits"
    assert len(list((digits / "train").rglob("*.png"))) == 3 * 10
    assert len(list((digits / "validation").rglob("*.png"))) == 360  # every 5th of the 1,797 digits
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_top5_accuracy" in metrics
    assert 0.0 <= metrics["linear_probe_accuracy"] <= 1.0
    adapter = tmp_path / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "eval_results.json"} <= {
        path.name for path in adapter.iterdir()
    }
    # the CLI took the shipped backbone as --model_name_or_path
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == PRETRAINED_BACKBONE
    assert f"{metrics['eval_accuracy']:.2%}" in out and f"{metrics['linear_probe_accuracy']:.2%}" in out
    assert "adapter (houlsby, bottleneck 32" in out and "linear probe (frozen backbone, head only)" in out
    predictions = [line.split(":")[0].strip() for line in out.splitlines()[-3:]]
    assert len(predictions) == 3 and all(label in [str(d) for d in range(10)] for label in predictions)


def test_a_rerun_with_fewer_labels_trains_on_fewer_images(tmp_path: Path) -> None:
    demo.write_digits(tmp_path, labels_per_class=3)
    train, validation = demo.write_digits(tmp_path, labels_per_class=1)
    assert sorted(path.parent.name for path in train.rglob("*.png")) == [str(d) for d in range(10)]
    assert len(list(validation.rglob("*.png"))) == 360
