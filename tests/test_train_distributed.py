"""Data-parallel training with the same script: `torchrun --nproc_per_node 2 -m hf_vit_adapter.train ... --use_cpu`
runs two gloo processes (Accelerate's MULTI_CPU), which split each epoch between them."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

from train_helpers import make_image_folder, make_tiny_vit, quick_args, read_json, run_cli


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_processes(tmp_path: Path):
    make_tiny_vit(tmp_path / "backbone")
    make_image_folder(tmp_path / "train", per_class=8)  # 24 images
    make_image_folder(tmp_path / "validation", per_class=2, seed=1)
    output_dir = tmp_path / "out"
    args = quick_args(
        tmp_path / "backbone",
        output_dir,
        train_dir=str(tmp_path / "train"),
        validation_dir=str(tmp_path / "validation"),
        per_device_train_batch_size="4",
        num_train_epochs="2",
        learning_rate="0.01",
    )
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    launcher = [*torchrun.split(), "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = run_cli(args, tmp_path, launcher=launcher, timeout=400)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log
    # every trainable parameter (adapters, head) takes part in each step; the CLI tells DDP so: no search, no warning
    assert "find_unused_parameters" not in log
    # 24 images, 2 processes x 4 per step -> 3 optimizer steps per epoch (a single process would take 6)
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 6
    assert "eval_accuracy" in read_json(output_dir / "eval_results.json")
    assert (output_dir / "adapter_model.safetensors").is_file() and (output_dir / "README.md").is_file()
