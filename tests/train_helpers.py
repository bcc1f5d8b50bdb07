"""Small stand-ins for the training tests: a tiny ViT "checkpoint" folder and image folders made on the spot.

Both stand in for the Hub (a pretrained backbone, a dataset); nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

REPO_ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices run faster on one thread, and much faster when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_vit(folder: Path, image_size: int = 32, seed: int = 0, **config_kwargs) -> Path:
    """Save a randomly initialised 2-layer ViT and its image processor, as a local stand-in for a Hub checkpoint.

    The weights are seeded, so a test's result does not depend on which tests ran before it.
    """
    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=image_size,
        patch_size=8,
        **config_kwargs,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def colour_image(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (40, 36)) -> Image.Image:
    """A noisy image of one colour: easy to classify, so a few steps of training already beat chance."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def make_image_folder(folder: Path, per_class: int, seed: int = 0, classes: dict | None = None) -> Path:
    """An imagefolder (`folder/<class>/<n>.png`) of noisy single-colour images."""
    for index, (name, colour) in enumerate((classes or COLOURS).items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            colour_image(colour, seed * 1000 + index * 100 + number).save(folder / name / f"{number}.png")
    return folder


def quick_args(model: Path, output_dir: Path, **overrides) -> list[str]:
    """CLI flags for a run of a few CPU steps; `overrides` replace or add flags (`None` drops one)."""
    flags = {
        "model_name_or_path": str(model),
        "output_dir": str(output_dir),
        "bottleneck_size": "4",
        "per_device_train_batch_size": "8",
        "per_device_eval_batch_size": "16",
        "learning_rate": "0.05",
        "num_train_epochs": "3",
        "logging_steps": "1",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": "true",
        "seed": "0",
        "dataloader_num_workers": "0",
        "disable_tqdm": "true",
        "cache_dir": str(output_dir.parent / "cache"),
        **overrides,
    }
    return [item for key, value in flags.items() if value is not None for item in (f"--{key}", value)]


def train_run(args: list[str]) -> dict[str, float]:
    """Run the CLI in this process and return its metrics (`main` itself returns nothing: its exit code says)."""
    from hf_vit_adapter.train import train
    from hf_vit_adapter.training.arguments import parse_args

    return train(*parse_args(args))


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses: no Hub, caches inside the test's folder."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_DATASETS_CACHE=str(tmp_path / "datasets_cache"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    return env


def run_cli(args: list[str], tmp_path: Path, launcher: list[str] | None = None, timeout: int = 300):
    """Run the CLI in a fresh process (`python -m hf_vit_adapter.train` unless `launcher` says otherwise)."""
    command = (launcher or [sys.executable]) + ["-m", "hf_vit_adapter.train", *args]
    return subprocess.run(
        command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=timeout
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
