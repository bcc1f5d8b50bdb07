"""The README of a pretrained model folder: how it was made and how well it learned, from `pretraining.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_readme(output_dir: Path, record: dict[str, Any]) -> Path:
    args, data, metrics, time, model = (record[key] for key in ("arguments", "data", "metrics", "time", "model"))
    machine = record["machine"]
    software = ", ".join(f"{name} {version}" for name, version in record["software"].items())
    history = ", ".join(
        f"{entry['eval_accuracy']:.2%} (step {entry['step']:,})" for entry in metrics["eval_accuracy_history"]
    )
    architecture = (
        f"{args['image_size']}x{args['image_size']} px, patch {args['patch_size']}, width {args['hidden_size']}, "
        f"{args['num_hidden_layers']} blocks, {args['num_attention_heads']} heads, {model['parameters']:,} parameters"
    )
    text = f"""---
library_name: transformers
pipeline_tag: image-classification
license: apache-2.0
tags:
- vit
- formula-driven-supervised-learning
- fractaldb
---

# A tiny ViT pretrained on fractals only

A `ViTForImageClassification` ({architecture}) pretrained from scratch, offline, on {data["train_images"]:,}
images of {args["num_categories"]} formula-generated fractal categories, without a single natural image
(formula-driven supervised learning: FractalDB, Kataoka et al., ACCV 2020; for ViTs, Nakashima et al., AAAI 2022).
Its {args["num_categories"]}-way head classifies fractal categories: load it with a new head for your task
(`num_labels=..., ignore_mismatched_sizes=True`, as `hf-vit-adapter-train` does).

## How it was made

```bash
{record["command"]}
```

- Data (`pretraining/fractals.py`, seed {args["seed"]}): {args["num_categories"]} categories x \
{args["train_instances"]} training + {args["eval_instances"]} held-out instances = {data["train_images"]:,} + \
{data["eval_images"]:,} greyscale images, {args["points"]:,} chaos-game points each; generated in \
{time["data_generation_wall_s"]:.0f} s.
- Training: `Trainer`, AdamW, learning rate {args["learning_rate"]:g}, weight decay {args["weight_decay"]:g}, \
cosine schedule with {args["warmup_steps"]:g} warm-up, batch {args["batch_size"]}, {args["num_train_epochs"]:g} \
epochs ({time["train_steps"]:,} steps), no augmentation, seed {args["seed"]}, {machine["torch_threads"]} torch \
thread(s).
- Time: {time["training_wall_s"]:.0f} s wall clock of training ({time["training_cpu_s"]:.0f} s of CPU time), \
started {time["started"]} on {machine["cpu"]} ({machine["cpu_count"]} CPUs visible, shared with other jobs: load \
average {time["load_average_start"]:.2f} at start, {time["load_average_end"]:.2f} at end).
- Software: {software}.
- `model.safetensors` SHA-256: `{model["model_safetensors_sha256"]}`.

## Pretraining accuracy

- Held-out instances ({data["eval_images"]:,} images never trained on): **{metrics["eval_accuracy"]:.2%}** top-1
  over {args["num_categories"]} categories (chance {1 / args["num_categories"]:.2%}).
- Training images (an evenly spread subset as large as the held-out set): {metrics["train_subset_accuracy"]:.2%}.
- Held-out accuracy during training: {history}.

`pretraining.json` holds every number above.
"""
    path = output_dir / "README.md"
    path.write_text(text)
    return path
