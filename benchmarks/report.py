"""Writes a benchmark run as JSON (everything), markdown (the tables) and PNG (the ratios at a glance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

MIB = 2**20


def _spread(spread: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    median, low, high = (spread[key] * scale for key in ("median", "min", "max"))
    return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def _optional_spread(spread: dict[str, float] | None) -> str:
    return "—" if spread is None else _spread(spread)


def _params(row: dict[str, Any]) -> str:
    return f"{row['trainable_params']:,} | {row['trainable_pct']:.2f}"


def markdown(results: dict[str, Any]) -> str:
    machine, settings = results["machine"], results["settings"]
    lines = [
        "## Speed, memory and parameters",
        "",
        f"Command: `{settings['command']}`  ",
        f"Machine: {machine['description']}  ",
        f"Software: torch {machine['torch']}, transformers {machine['transformers']}, peft {machine['peft']}; "
        f"device {settings['device']}, dtype {settings['dtype']}; {settings['date']}",
        "",
        "Ratios are medians of per-round ratios (each round times every variant back to back, A B C A B C ...), with "
        "min–max in brackets. FLOP ratios count matmul/conv/attention FLOPs with "
        "`torch.utils.flop_counter.FlopCounterMode`. For inference (one forward) that ratio is the arithmetic lower "
        "bound of the latency ratio. For training it counts forward + backward as autograd runs it but not the "
        "optimizer step, which is element-wise and proportional to the trainable parameters, so full fine-tuning's "
        "AdamW step over every weight can put a measured ratio below it. Trainable parameters include the "
        f"classification head ({results['num_labels']} classes); % is of the untuned model's parameters.",
    ]
    if settings.get("quick"):
        lines += ["", "**A smoke test, not a measurement:** a tiny ViT and a few repeats; the timings mean nothing."]
    for arch in results["architectures"]:
        lines += [
            "",
            f"### {arch['label']}",
            "",
            f"Batch {arch['batch_size']}, {arch['image_size']} px, {arch['repeats']} interleaved repeats after "
            f"{arch['warmup']} warm-up call(s) each; base model: {arch['base_params']:,} parameters.",
            "",
            "Inference (forward, `torch.inference_mode`):",
            "",
            "| method | trainable params | % of base | latency ms, median (min–max) | × base, median (min–max) "
            "| × base, CPU time | FLOP bound × base |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in arch["inference"]:
            lines.append(
                f"| {row['method']} | {_params(row)} | {_spread(row['latency_s'], 1000, 1)} | "
                f"{_spread(row['ratio'])} | {_optional_spread(row.get('cpu_time_ratio'))} | {row['flop_ratio']:.4f} |"
            )
        lines += [
            "",
            "Training step (forward, cross-entropy, backward, AdamW step, zero_grad):",
            "",
            "| method | trainable params | % of base | step s, median (min–max) | × full FT | × LoRA r8 "
            "| × full FT, CPU time | × LoRA r8, CPU time | FLOP ratio × full FT | FLOP ratio × LoRA "
            "| backward/forward FLOPs | peak tensor memory MiB (× full FT) | peak RSS growth MiB (× full FT) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in arch["training"]:
            rss = row.get("peak_rss_growth")
            rss_cell = "—" if rss is None else f"{rss / MIB:,.1f} ({row['rss_ratio_to_full']:.2f})"
            lines.append(
                f"| {row['method']} | {_params(row)} | {_spread(row['step_s'])} | {_spread(row['ratio_to_full'])} | "
                f"{_spread(row['ratio_to_lora'])} | {_optional_spread(row.get('cpu_time_ratio_to_full'))} | "
                f"{_optional_spread(row.get('cpu_time_ratio_to_lora'))} | {row['flop_ratio_to_full']:.3f} | "
                f"{row['flop_ratio_to_lora']:.3f} | "
                f"{row['backward_to_forward_flops']:.2f} | {row['peak_bytes'] / MIB:,.1f} "
                f"({row['peak_ratio_to_full']:.2f}) | {rss_cell} |"
            )
    if results.get("targets"):
        lines += [
            "",
            "### Targets (issue 5)",
            "",
            "| measure | target | measured (median, min–max) | met |",
            "|---|---|---|---|",
        ]
        for target in results["targets"]:
            verdict = "yes" if target["met"] else "**no**"
            lines.append(f"| {target['measure']} | {target['target']} | {target['measured']} | {verdict} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    """One row per architecture: inference ratios by placement and bottleneck; training time and memory ratios."""
    architectures = results["architectures"]
    figure, axes = plt.subplots(len(architectures), 2, figsize=(14, 4.5 * len(architectures)), squeeze=False)
    for (left, right), arch in zip(axes, architectures, strict=True):
        rows = [row for row in arch["inference"] if row["kind"] == "adapter"]
        positions = range(len(rows))
        medians = [row["ratio"]["median"] for row in rows]
        errors = [
            [row["ratio"]["median"] - row["ratio"]["min"] for row in rows],
            [row["ratio"]["max"] - row["ratio"]["median"] for row in rows],
        ]
        left.bar(positions, medians, yerr=errors, capsize=3, color="tab:blue", label="measured (median, min–max)")
        left.scatter(
            positions,
            [row["flop_ratio"] for row in rows],
            color="crimson",
            marker="D",
            s=18,
            zorder=3,
            label="FLOP ratio",
        )
        left.axhline(1.0, color="grey", linewidth=0.8)
        left.set_xticks(
            list(positions),
            [row["method"].removeprefix("adapter ") for row in rows],
            rotation=60,
            ha="right",
            fontsize=8,
        )
        low = min([*medians, *(row["ratio"]["min"] for row in rows), 1.0])
        left.set_ylim(max(0.0, low - 0.05), None)
        left.set_ylabel("inference latency × base")
        left.set_title(f"{arch['key']}: inference, batch {arch['batch_size']}")
        left.legend(fontsize=8)

        rows = arch["training"]
        positions = range(len(rows))
        width = 0.4
        right.bar(
            [p - width / 2 for p in positions],
            [row["ratio_to_full"]["median"] for row in rows],
            width,
            yerr=[
                [row["ratio_to_full"]["median"] - row["ratio_to_full"]["min"] for row in rows],
                [row["ratio_to_full"]["max"] - row["ratio_to_full"]["median"] for row in rows],
            ],
            capsize=3,
            color="tab:orange",
            label="step time × full FT",
        )
        right.bar(
            [p + width / 2 for p in positions],
            [row["peak_ratio_to_full"] for row in rows],
            width,
            color="tab:green",
            label="peak tensor memory × full FT",
        )
        right.scatter(
            [p - width / 2 for p in positions],
            [row["flop_ratio_to_full"] for row in rows],
            color="crimson",
            marker="D",
            s=18,
            zorder=3,
            label="FLOP ratio",
        )
        right.set_xticks(list(positions), [row["method"] for row in rows], rotation=30, ha="right", fontsize=8)
        right.set_ylabel("× full fine-tuning")
        right.set_title(f"{arch['key']}: training step, batch {arch['batch_size']}")
        right.legend(fontsize=8)
    figure.suptitle(f"hf-vit-adapter benchmark — {results['settings']['device']} {results['settings']['dtype']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Re-render the markdown and chart of a saved run: `python benchmarks/report.py benchmarks/results/x.json`."""
    import sys

    path = Path(sys.argv[1])
    write(json.loads(path.read_text()), path.parent, path.stem)


def write(results: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.json`, `<stem>.md` and `<stem>.png` into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {suffix: out_dir / f"{stem}.{suffix}" for suffix in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown(results))
    chart(results, paths["png"])
    return paths


if __name__ == "__main__":
    main()
