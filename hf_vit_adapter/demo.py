"""Offline demo: train an adapter on real handwritten digits with a tiny ViT, then classify an image with it.

    python -m hf_vit_adapter.demo [--workdir hf-vit-adapter-demo] [training flags, e.g. --num_train_epochs 1]

Nothing is downloaded. The images are scikit-learn's 8x8 handwritten digits (1,797 of them, shipped with
scikit-learn), written out as 32x32 PNGs in an image folder. The backbone is a 4-block ViT built from
`hf_vit_adapter/demo_model/config.json` with random weights, so the accuracy shows that the training path works,
not how well adapters do on a pretrained backbone. Training goes through the CLI's own code (`hf_vit_adapter.train`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

DEMO_MODEL = Path(__file__).parent / "demo_model"
VALIDATION_EVERY = 5  # every 5th digit goes to the validation folder


def write_digits(folder: Path) -> tuple[Path, Path]:
    """Write scikit-learn's digits as `train/<digit>/<n>.png` and `validation/<digit>/<n>.png`, upscaled to 32x32."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, validation = folder / "train", folder / "validation"
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = validation if index % VALIDATION_EVERY == 0 else train
        (split / str(target)).mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray((pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")  # values are 0..16
        grey.resize((32, 32), Image.Resampling.BICUBIC).save(split / str(target) / f"{index}.png")
    return train, validation


def build_backbone(folder: Path, seed: int = 0) -> Path:
    """Save a randomly initialised ViT from the shipped config, with its image processor, as a local checkpoint."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    ViTForImageClassification(ViTConfig.from_json_file(DEMO_MODEL / "config.json")).save_pretrained(folder)
    shutil.copy(DEMO_MODEL / "preprocessor_config.json", folder / "preprocessor_config.json")
    return folder


def training_flags(backbone: Path, train: Path, validation: Path, output_dir: Path) -> list[str]:
    """The CLI flags of the demo run: about a minute on 2 CPU cores."""
    flags = {
        "model_name_or_path": backbone,
        "train_dir": train,
        "validation_dir": validation,
        "output_dir": output_dir,
        "bottleneck_size": 32,
        "placement": "houlsby",
        "learning_rate": 2e-2,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "weight_decay": 1e-4,
        "num_train_epochs": 10,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "min_crop_scale": 0.85,
        "horizontal_flip": False,
        "logging_steps": 20,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        "overwrite_output_dir": True,  # the demo owns its workdir: a second run replaces the first
    }
    return [item for key, value in flags.items() for item in (f"--{key}", str(value))]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="hf-vit-adapter-demo", help="Folder for images, backbone, adapter.")
    args, extra_flags = parser.parse_known_args(argv)

    import torch
    from transformers import pipeline

    from .train import train as run_training
    from .training.arguments import parse_args

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # the demo's matrices are tiny: a second thread costs more than it brings
    workdir = Path(args.workdir).resolve()
    output_dir = workdir / "adapter"
    print(f"Writing scikit-learn's handwritten digits as PNG images under {workdir / 'digits'} ...")
    train, validation = write_digits(workdir / "digits")
    backbone = build_backbone(workdir / "tiny-vit")
    print(f"Built a randomly initialised tiny ViT from {DEMO_MODEL / 'config.json'} at {backbone}.")

    # Flags given on the command line come last, so they win over the demo's.
    metrics = run_training(*parse_args(training_flags(backbone, train, validation, output_dir) + extra_flags))

    sample = next(iter(sorted((validation / "7").glob("*.png"))))
    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    predictions = classifier(str(sample), top_k=3)
    print()
    print(f"Validation accuracy: {metrics['eval_accuracy']:.2%} (random-init backbone: this checks the training path,")
    print("it says nothing about adapters on a pretrained ViT)")
    print(f"Adapter, image processor, metrics and model card: {output_dir}")
    print(f'pipeline("image-classification", model="{output_dir}") on {sample.name} (a 7):')
    for prediction in predictions:
        print(f"  {prediction['label']}: {prediction['score']:.3f}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
