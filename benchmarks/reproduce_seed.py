"""Reproduce the seed's accuracy table: train the 12 seed recipes (6 datasets x 2 backbones) and write our
top-1 accuracy beside the seed's published numbers.

    python benchmarks/reproduce_seed.py --dry-run                # list the commands and the estimated runtime
    python benchmarks/reproduce_seed.py                          # run all 12, one subprocess each (GPU + Hub)
    python benchmarks/reproduce_seed.py --only cifar100 dogs     # recipes whose file name contains a filter
    python benchmarks/reproduce_seed.py --collect-only           # only (re)build the table from finished runs

Each recipe is `examples/<dataset>_<backbone>.json`, run as `python -m hf_vit_adapter.train <recipe>`; its result is
`eval_accuracy` in `<output_dir>/all_results.json`. Writes `<out>/seed_reproduction.{md,json}`. Recipes of other
adapters (`examples/adapter-plus_*.json`, which set `adapter_preset`) are not part of the seed's table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIT, CLIP = "ViT-B/16 (ImageNet-21k)", "ViT-L/14 (CLIP)"
BACKBONES = (VIT, CLIP)

# The seed's top-1 accuracy (REFERENCE.md), and the dataset sizes behind the runtime estimate.
SEED_ACCURACY: dict[str, dict[str, float]] = {
    "CIFAR-100": {VIT: 91.88, CLIP: 91.76},
    "CUB-200-2011": {VIT: 87.66, CLIP: 88.00},
    "NABirds": {VIT: 81.79, CLIP: 83.47},
    "Oxford Flowers": {VIT: 98.63, CLIP: 98.83},
    "Stanford Cars": {VIT: 80.98, CLIP: 93.11},
    "Stanford Dogs": {VIT: 89.00, CLIP: 87.56},
}
SEED_AVERAGE = {VIT: 88.32, CLIP: 90.46}
# (train, evaluation) images of the standard splits; Flowers trains on its 1,020-image train split.
SPLIT_SIZES = {
    "CIFAR-100": (50_000, 10_000),
    "CUB-200-2011": (5_994, 5_794),
    "NABirds": (23_929, 24_633),
    "Oxford Flowers": (1_020, 6_149),
    "Stanford Cars": (8_144, 8_041),
    "Stanford Dogs": (12_000, 8_580),
}
# How a recipe's file name (or its dataset_name) names a dataset.
DATASET_ALIASES = {
    "CIFAR-100": ("cifar100", "cifar_100", "cifar-100"),
    "CUB-200-2011": ("cub",),
    "NABirds": ("nabirds",),
    "Oxford Flowers": ("flowers",),
    "Stanford Cars": ("cars",),
    "Stanford Dogs": ("dogs",),
}
# Assumed training throughput on one H100/H200 in bf16 (images/s), evaluation twice as fast. An ASSUMPTION, not a
# measurement: adapter training of ViT-B/16 costs ~2x its 35 GFLOP forward per image, CLIP ViT-L/14 ~2x 162 GFLOP;
# ViT-B/16 is then limited by JPEG decoding and resizing in the data loader rather than by the GPU.
ASSUMED_TRAIN_IMAGES_PER_S = {VIT: 800.0, CLIP: 350.0}
DEFAULT_EPOCHS = 3.0  # TrainingArguments' default when a recipe gives neither num_train_epochs nor max_steps
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Recipe:
    path: Path
    dataset: str
    backbone: str
    settings: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.settings.get("output_dir", f"outputs/{self.path.stem}"))

    def estimated_seconds(self, images_per_s: dict[str, float]) -> float:
        train_images, eval_images = SPLIT_SIZES[self.dataset]
        speed = images_per_s[self.backbone]
        max_steps = int(self.settings.get("max_steps", -1) or -1)
        if max_steps > 0:
            seen = max_steps * int(self.settings.get("per_device_train_batch_size", DEFAULT_BATCH))
        else:
            seen = float(self.settings.get("num_train_epochs", DEFAULT_EPOCHS)) * train_images
        evaluations = (
            1
            if self.settings.get("eval_strategy", "no") == "no"
            else 1 + float(self.settings.get("num_train_epochs", DEFAULT_EPOCHS))
        )
        return seen / speed + evaluations * eval_images / (2 * speed)


def _dataset_of(stem: str, settings: dict[str, Any]) -> str | None:
    for text in (stem.lower(), str(settings.get("dataset_name", "")).lower()):
        for dataset, aliases in DATASET_ALIASES.items():
            if any(alias in text for alias in aliases):
                return dataset
    return None


def _backbone_of(stem: str, settings: dict[str, Any]) -> str:
    text = f"{stem} {settings.get('model_name_or_path', '')}".lower()
    return CLIP if "clip" in text else VIT


def is_seed_recipe(settings: dict[str, Any]) -> bool:
    """A seed recipe trains the seed's own adapter; recipes of other adapters (`adapter_preset`, e.g. the Adapter+
    recipes `examples/adapter-plus_*.json`) have other reference numbers and are run with the CLI directly."""
    return not settings.get("adapter_preset")


def find_recipes(examples: Path, only: list[str] | None = None) -> list[Recipe]:
    """The seed recipes in `examples`, in the seed table's order; `only` keeps file names containing a filter."""
    recipes = []
    for path in sorted(examples.glob("*.json")):
        settings = json.loads(path.read_text())
        dataset = _dataset_of(path.stem, settings)
        if dataset is None or not is_seed_recipe(settings):
            continue
        if only and not any(word.lower() in path.stem.lower() for word in only):
            continue
        recipes.append(Recipe(path, dataset, _backbone_of(path.stem, settings), settings))
    order = list(SEED_ACCURACY)
    return sorted(recipes, key=lambda r: (order.index(r.dataset), BACKBONES.index(r.backbone), r.path.name))


def read_accuracy(recipe: Recipe) -> float | None:
    """Top-1 accuracy in percent from the run's `all_results.json`, or None if the run has not finished."""
    results = recipe.output_dir / "all_results.json"
    if not results.is_file():
        return None
    accuracy = json.loads(results.read_text()).get("eval_accuracy")
    if accuracy is None:
        return None
    return 100 * accuracy if accuracy <= 1.0 else accuracy  # Trainer reports a fraction


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _delta(ours: float | None, seed: float) -> str:
    return "—" if ours is None else f"{ours - seed:+.2f}"


def table(accuracy: dict[tuple[str, str], float | None]) -> str:
    """Markdown: the seed's table with our accuracy and the difference beside each number."""
    lines = [
        f"| Dataset | {VIT} seed | ours | Δ | {CLIP} seed | ours | Δ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, seed in SEED_ACCURACY.items():
        cells = []
        for backbone in BACKBONES:
            ours = accuracy.get((dataset, backbone))
            cells += [f"{seed[backbone]:.2f}", _cell(ours), _delta(ours, seed[backbone])]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    cells = []
    for backbone in BACKBONES:
        ours = [accuracy.get((dataset, backbone)) for dataset in SEED_ACCURACY]
        done = [value for value in ours if value is not None]
        # An average over fewer datasets is not comparable to the seed's, so it is only given over all six.
        mean = sum(done) / len(done) if len(done) == len(ours) else None
        cells += [f"{SEED_AVERAGE[backbone]:.2f}", _cell(mean), _delta(mean, SEED_AVERAGE[backbone])]
    lines.append("| Average | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=Path("examples"), help="folder of <dataset>_<backbone>.json")
    parser.add_argument("--only", nargs="+", help="run only recipes whose file name contains one of these")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and runtime estimate; run nothing")
    parser.add_argument("--collect-only", action="store_true", help="run nothing; build the table from results")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--launcher",
        default=f"{shlex.quote(sys.executable)} -m hf_vit_adapter.train",
        help="command that takes a recipe path (e.g. hf-vit-adapter-train)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recipes = find_recipes(args.examples, args.only)
    if not recipes:
        raise SystemExit(f"No seed recipes found in {args.examples} (filter: {args.only}).")
    commands = [(recipe, [*shlex.split(args.launcher), str(recipe.path)]) for recipe in recipes]
    if args.dry_run:
        total = 0.0
        for recipe, command in commands:
            seconds = recipe.estimated_seconds(ASSUMED_TRAIN_IMAGES_PER_S)
            total += seconds
            print(
                f"{shlex.join(command)}    # {recipe.dataset}, {recipe.backbone}: ~{seconds / 60:.0f} min (estimate)"
            )
        print(
            f"# {len(commands)} recipes, estimated {total / 3600:.1f} h on one GPU "
            "(assumed throughput, see benchmarks/README.md)"
        )
        return {"commands": [shlex.join(command) for _, command in commands], "estimated_s": total}

    status: dict[str, Any] = {}
    if not args.collect_only:
        for recipe, command in commands:
            print(f"== {recipe.dataset}, {recipe.backbone}: {shlex.join(command)}", flush=True)
            start = time.perf_counter()
            returncode = subprocess.run(command, check=False).returncode
            status[recipe.path.name] = {"returncode": returncode, "seconds": time.perf_counter() - start}

    accuracy = {(recipe.dataset, recipe.backbone): read_accuracy(recipe) for recipe in recipes}
    markdown = table(accuracy)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_reproduction.md").write_text(markdown)
    rows = [
        {
            "recipe": str(recipe.path),
            "dataset": recipe.dataset,
            "backbone": recipe.backbone,
            "seed_accuracy": SEED_ACCURACY[recipe.dataset][recipe.backbone],
            "our_accuracy": accuracy[(recipe.dataset, recipe.backbone)],
            **status.get(recipe.path.name, {}),
        }
        for recipe in recipes
    ]
    (args.out / "seed_reproduction.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown)
    return {"rows": rows, "markdown": markdown}


if __name__ == "__main__":
    main()
