"""The offline demo (`python -m hf_vit_adapter.demo`), shortened: real digits, the shipped tiny-ViT config, no
network, and a pipeline prediction on the adapter it wrote."""

from __future__ import annotations

from pathlib import Path

import torch

from hf_vit_adapter import demo


def test_demo_trains_on_digits_and_classifies_through_pipeline(tmp_path: Path, capsys):
    threads = torch.get_num_threads()
    try:
        # one epoch on 300 digits keeps the test short; the full demo runs 10 epochs on all 1,437 training digits
        metrics = demo.main(["--workdir", str(tmp_path), "--num_train_epochs", "1", "--max_train_samples", "300"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    digits = tmp_path / "digits"
    assert len(list((digits / "train").rglob("*.png"))) + len(list((digits / "validation").rglob("*.png"))) == 1797
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_top5_accuracy" in metrics
    adapter = tmp_path / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "eval_results.json"} <= {
        path.name for path in adapter.iterdir()
    }
    assert "Validation accuracy:" in out and "random-init backbone" in out
    predictions = [line.split(":")[0].strip() for line in out.splitlines()[-3:]]
    assert len(predictions) == 3 and all(label in [str(d) for d in range(10)] for label in predictions)
