"""Offline demo: an adapter on a pretrained ViT, from a few labelled digits, beside a linear probe on the same split.

    python -m hf_vit_adapter.demo [--workdir hf-vit-adapter-demo] [--labels_per_class 10] [training flags]

Nothing is downloaded. The backbone is the tiny ViT that ships with the package (`PRETRAINED_BACKBONE`), pretrained
on formula-generated fractals (`pretraining/`), so it has never seen a digit. The images are scikit-learn's 8x8
handwritten digits (1,797, shipped with scikit-learn) written as 32x32 PNGs: every 5th digit goes to the validation
folder, and only `--labels_per_class` of the others per digit to the training folder. The adapter trains through
the CLI's own code (`hf_vit_adapter.train`); the linear probe is a logistic regression (scikit-learn) on the frozen
backbone's features of the same training images, scored on the same validation images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .pretrained import PRETRAINED_BACKBONE

VALIDATION_EVERY = 5  # every 5th digit goes to the validation folder
LABELS_PER_CLASS = 10


def digit_image(pixels, size: int = 32):
    """One of scikit-learn's 8x8 digits (values 0..16) as a greyscale PIL image, upscaled (bicubic) to `size`."""
    import numpy as np
    from PIL import Image

    grey = Image.fromarray((np.asarray(pixels) * (255.0 / 16.0)).astype(np.uint8), mode="L")
    return grey.resize((size, size), Image.Resampling.BICUBIC)


def write_digits(folder: Path, labels_per_class: int) -> tuple[Path, Path]:
    """Write `train/<digit>/<n>.png` (the first `labels_per_class` of each digit) and `validation/<digit>/<n>.png`.

    Images of an earlier demo run in `folder` go first, so a rerun with fewer labels trains on what it asked for.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, validation = folder / "train", folder / "validation"
    for split in (train, validation):
        shutil.rmtree(split, ignore_errors=True)
    written = dict.fromkeys(range(10), 0)
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        if index % VALIDATION_EVERY == 0:
            split = validation
        elif written[target] < labels_per_class:
            split, written[target] = train, written[target] + 1
        else:
            continue
        (split / str(target)).mkdir(parents=True, exist_ok=True)
        digit_image(pixels).save(split / str(target) / f"{index}.png")
    return train, validation


def training_flags(backbone: str, train: Path, validation: Path, output_dir: Path) -> list[str]:
    """The CLI flags of the demo's adapter run."""
    flags = {
        "model_name_or_path": backbone,
        "train_dir": train,
        "validation_dir": validation,
        "output_dir": output_dir,
        "bottleneck_size": 32,
        "placement": "houlsby",
        "learning_rate": 1e-2,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "weight_decay": 1e-4,
        "num_train_epochs": 30,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128,
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


def linear_probe(backbone: str, train: Path, validation: Path) -> tuple[float, int]:
    """Validation accuracy of a logistic regression on the frozen backbone's [CLS] features, and its parameters.

    The features are what the backbone's classification head reads (the final layer norm of the [CLS] token),
    computed from the images as the image processor prepares them, with no augmentation.
    """
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = AutoImageProcessor.from_pretrained(backbone)
    # the backbone without its fractal head: loading it whole and taking `.base_model` avoids a report of unused keys
    model = AutoModelForImageClassification.from_pretrained(backbone).base_model.eval()

    def features(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        paths = sorted(folder.glob("*/*.png"))
        images = [Image.open(path).convert("RGB") for path in paths]
        with torch.no_grad():
            hidden = model(**processor(images, return_tensors="pt")).last_hidden_state
        return hidden[:, 0].numpy(), np.array([int(path.parent.name) for path in paths])

    train_x, train_y = features(train)
    probe = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    validation_x, validation_y = features(validation)
    return float(probe.score(validation_x, validation_y)), probe.coef_.size + probe.intercept_.size


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="hf-vit-adapter-demo", help="Folder for the images and the adapter.")
    parser.add_argument(
        "--labels_per_class", type=int, default=LABELS_PER_CLASS, help="Labelled training digits per class."
    )
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
    train, validation = write_digits(workdir / "digits", args.labels_per_class)
    print(f"Backbone: {PRETRAINED_BACKBONE} (a tiny ViT pretrained on fractals only; see its README.md)")

    # Flags given on the command line come last, so they win over the demo's.
    flags = training_flags(PRETRAINED_BACKBONE, train, validation, output_dir) + extra_flags
    metrics = run_training(*parse_args(flags))
    probe_accuracy, probe_parameters = linear_probe(PRETRAINED_BACKBONE, train, validation)
    metrics["linear_probe_accuracy"] = probe_accuracy

    sample = next(iter(sorted((validation / "7").glob("*.png"))))
    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    predictions = classifier(str(sample), top_k=3)
    train_images = len(list(train.glob("*/*.png")))
    validation_images = len(list(validation.glob("*/*.png")))
    print()
    print(f"Validation accuracy on {validation_images} held-out digits, trained on {train_images} labelled ones:")
    print(f"  adapter (houlsby, bottleneck 32, + head):      {metrics['eval_accuracy']:.2%}")
    print(f"  linear probe (frozen backbone, head only):     {probe_accuracy:.2%}")
    print(f"  ({probe_parameters:,}-parameter logistic regression on the backbone's features)")
    print(f"Adapter, image processor, metrics and model card: {output_dir}")
    print(f'pipeline("image-classification", model="{output_dir}") on {sample.name} (a 7):')
    for prediction in predictions:
        print(f"  {prediction['label']}: {prediction['score']:.3f}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
