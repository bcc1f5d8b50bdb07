"""Pretrain a small ViT on formula-driven images (FractalDB-style fractals) with the Hugging Face `Trainer`, offline.

    python pretraining/pretrain.py --output_dir hf_vit_adapter/pretrained/fractal-vit-tiny   # the shipped backbone

Every setting has the default that made the shipped backbone, so that command reproduces it. The dataset is
generated from `--seed` (see `fractals.py`); the held-out instances of every category give the pretraining accuracy.
`--output_dir` receives a transformers model folder (`model.safetensors`, `config.json`,
`preprocessor_config.json`), `pretraining.json` (settings, data sizes, times, metrics, software) and a `README.md`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as `python pretraining/pretrain.py`: make `pretraining` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from pretraining import fractals  # noqa: E402
from pretraining.model_card import write_readme  # noqa: E402

MEAN = STD = 0.5  # the image processor's normalisation, the same as the demo's


@dataclass
class PretrainingArguments:
    """Data, model and optimisation settings. The defaults made the shipped backbone."""

    output_dir: str = field(metadata={"help": "Where the model folder is written (created; files are replaced)."})
    seed: int = field(default=0, metadata={"help": "Seeds the fractal search, the rendering and the training."})
    threads: int = field(
        default=1, metadata={"help": "torch threads; results are bit-identical only for the same thread count."}
    )
    num_categories: int = field(default=100, metadata={"help": "Fractal categories (classes)."})
    train_instances: int = field(default=1000, metadata={"help": "Training images per category."})
    eval_instances: int = field(default=20, metadata={"help": "Held-out images per category."})
    points: int = field(default=3000, metadata={"help": "Chaos-game points per image."})
    image_size: int = field(default=32, metadata={"help": "Image side in pixels."})
    patch_size: int = field(default=4, metadata={"help": "ViT patch side in pixels."})
    hidden_size: int = field(default=128, metadata={"help": "ViT width."})
    num_hidden_layers: int = field(default=4, metadata={"help": "ViT blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads per block."})
    num_train_epochs: float = field(default=2, metadata={"help": "Epochs over the training images."})
    batch_size: int = field(default=64, metadata={"help": "Training batch size."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate (cosine schedule)."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up, as a fraction of the steps (< 1)."})
    eval_steps: int = field(default=500, metadata={"help": "Evaluate on the held-out images every N steps."})


def parse_args(argv: list[str] | None = None) -> PretrainingArguments:
    (args,) = HfArgumentParser(PretrainingArguments).parse_args_into_dataclasses(args=argv)
    return args


def _generators(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams for the category search and each split, so any one can be regenerated alone."""
    streams = np.random.SeedSequence(seed).spawn(3)
    return dict(zip(("search", "train", "validation"), map(np.random.default_rng, streams), strict=True))


def fractal_spec(args: PretrainingArguments) -> fractals.FractalSpec:
    return fractals.FractalSpec(image_size=args.image_size, points=args.points)


def fractal_categories(args: PretrainingArguments) -> tuple[np.ndarray, np.ndarray]:
    """The IFS (maps, probabilities) of the `args.num_categories` categories, from `args.seed` alone."""
    return fractals.search_categories(_generators(args.seed)["search"], args.num_categories, fractal_spec(args))


def fractal_split(
    args: PretrainingArguments, categories: tuple[np.ndarray, np.ndarray], split: str
) -> datasets.Dataset:
    """The `train` or `validation` images of every category, as a torch-formatted `datasets.Dataset`."""
    per_category = args.train_instances if split == "train" else args.eval_instances
    rng = _generators(args.seed)[split]
    images, labels = fractals.render_instances(rng, *categories, per_category, fractal_spec(args))
    features = datasets.Features(
        {
            "pixel_values": datasets.Array2D((args.image_size, args.image_size), "uint8"),
            "labels": datasets.ClassLabel(names=category_names(args.num_categories)),
        }
    )
    return datasets.Dataset.from_dict({"pixel_values": images, "labels": labels}, features=features).with_format(
        "torch"
    )


def category_names(count: int) -> list[str]:
    return [f"fractal_{index:04d}" for index in range(count)]


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Greyscale uint8 images to the normalised 3-channel batch the image processor would give.

    No augmentation: the variation is in the instances, as in FractalDB. (A random resized crop, tried at small
    scale, slowed learning several-fold: a category is defined by its exact shape.)
    """
    grey = torch.stack([example["pixel_values"] for example in examples]).float().div(255.0)
    return {
        "pixel_values": ((grey - MEAN) / STD)[:, None].expand(-1, 3, -1, -1).contiguous(),
        "labels": torch.stack([example["labels"] for example in examples]),
    }


def build_model(args: PretrainingArguments, id2label: dict[int, str]) -> ViTForImageClassification:
    config = ViTConfig(
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_channels=3,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        intermediate_size=4 * args.hidden_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        id2label=id2label,
        label2id={label: index for index, label in id2label.items()},
    )
    transformers.set_seed(args.seed)
    return ViTForImageClassification(config)


def image_processor(args: PretrainingArguments) -> ViTImageProcessor:
    return ViTImageProcessor(
        size={"height": args.image_size, "width": args.image_size}, image_mean=[MEAN] * 3, image_std=[STD] * 3
    )


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def training_arguments(args: PretrainingArguments, run_dir: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=run_dir,
        seed=args.seed,
        use_cpu=True,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=256,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_steps,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def software() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrain(args: PretrainingArguments, command: str) -> dict[str, Any]:
    """Generate the data, train, evaluate, and write the model folder; return what `pretraining.json` records."""
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.timezone.utc)
    wall, cpu = time.perf_counter(), time.process_time()
    categories = fractal_categories(args)
    data = {split: fractal_split(args, categories, split) for split in ("train", "validation")}
    data_wall, data_cpu = time.perf_counter() - wall, time.process_time() - cpu

    model = build_model(args, dict(enumerate(category_names(args.num_categories))))
    with tempfile.TemporaryDirectory(prefix="fractal-pretraining-") as run_dir:
        trainer = Trainer(
            model=model,
            args=training_arguments(args, run_dir),
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=collate,
            compute_metrics=accuracy,
        )
        wall, cpu = time.perf_counter(), time.process_time()
        train_metrics = trainer.train().metrics
        train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
        history = [
            {"step": entry["step"], "epoch": entry["epoch"], "eval_accuracy": entry["eval_accuracy"]}
            for entry in trainer.state.log_history
            if "eval_accuracy" in entry
        ]
        eval_metrics = trainer.evaluate()
        # as many training images as held-out ones, evenly spread, for the gap between the two
        seen = data["train"].select(range(0, len(data["train"]), max(1, args.train_instances // args.eval_instances)))
        train_accuracy = trainer.evaluate(seen, metric_key_prefix="train")["train_accuracy"]

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    image_processor(args).save_pretrained(output_dir)
    record = {
        "command": command,
        "arguments": asdict(args),
        "data": {
            "generator": "FractalDB-style IFS (pretraining/fractals.py)",
            "train_images": len(data["train"]),
            "eval_images": len(data["validation"]),
            "image_size": args.image_size,
            "points_per_image": args.points,
        },
        "model": {
            "parameters": sum(p.numel() for p in model.parameters()),
            "model_safetensors_sha256": sha256(output_dir / "model.safetensors"),
        },
        "metrics": {
            "eval_accuracy": eval_metrics["eval_accuracy"],
            "eval_loss": eval_metrics["eval_loss"],
            "train_subset_accuracy": train_accuracy,
            "train_loss": train_metrics["train_loss"],
            "eval_accuracy_history": history,
        },
        "time": {
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "data_generation_wall_s": round(data_wall, 1),
            "data_generation_cpu_s": round(data_cpu, 1),
            "training_wall_s": round(train_wall, 1),
            "training_cpu_s": round(train_cpu, 1),
            "train_steps": trainer.state.global_step,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0],
        },
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "software": software(),
    }
    (output_dir / "pretraining.json").write_text(json.dumps(record, indent=2) + "\n")
    write_readme(output_dir, record)
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "pretraining/pretrain.py", *argv])
    record = pretrain(parse_args(argv), command)
    print(json.dumps(record["metrics"], indent=2))
    return record


if __name__ == "__main__":
    main()
