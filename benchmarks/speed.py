"""Speed, memory and parameter benchmark: base vs adapter (inference) and full fine-tuning vs LoRA vs adapter
(training), each beside its arithmetic lower bound, on models built from configs (no download).

    python benchmarks/speed.py                          # ViT-B/16 and CLIP ViT-L/14 on the CPU (tens of minutes)
    python benchmarks/speed.py --device cuda --dtype bf16
    python benchmarks/speed.py --quick                  # a tiny ViT, seconds: a smoke test, for CI

Writes `benchmarks/results/speed-<device>.{json,md,png}`. `--quick` writes `speed-quick.*` into the git-ignored
`benchmarks/results-quick/` instead, so the committed results stay the full runs'; `--out` puts either elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/speed.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.measure import (  # noqa: E402
    Spread,
    count_flops,
    inference_call,
    interleaved_times,
    paired_ratios,
    peak_training_bytes,
    training_step,
)
from benchmarks.models import (  # noqa: E402
    ARCHITECTURES,
    BASE,
    FULL,
    NUM_LABELS,
    Architecture,
    Method,
    adapter,
    build_base,
    build_on_meta,
    build_variant,
    count_parameters,
    lora,
)
from benchmarks.peak_rss import measure_in_subprocess, method_spec  # noqa: E402
from hf_vit_adapter import PLACEMENTS  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (batch size, repeats) per architecture when not given: a CPU run of CLIP ViT-L/14 at batch 4 would take an hour.
DEFAULTS = {
    "cpu": {"vit-b16": (4, 5), "clip-l14": (1, 3), "tiny-vit": (2, 3)},
    "cuda": {"vit-b16": (32, 10), "clip-l14": (32, 10), "tiny-vit": (2, 3)},
}
LORA_RANK = 8
RESULTS = Path("benchmarks/results")
QUICK_RESULTS = Path("benchmarks/results-quick")  # git-ignored
QUICK_CAVEAT = (
    "Quick run: a tiny ViT and a few repeats, a smoke test of the benchmark code. Its timings say nothing about "
    "the speed of adapters; the full runs' numbers are in benchmarks/results/."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: fp32 on cpu, bf16 on cuda")
    parser.add_argument(
        "--quick", action="store_true", help="tiny ViT, few repeats: a smoke test that finishes in seconds (CI)"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS} ({QUICK_RESULTS} with --quick)")
    parser.add_argument("--models", nargs="+", choices=sorted(ARCHITECTURES), default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model, see DEFAULTS")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds; default: per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each variant before timing")
    parser.add_argument("--bottlenecks", type=int, nargs="+", default=[8, 16, 64])
    # parallel_ln (0.1.0's parallel) costs what parallel costs; the default table keeps the four placements.
    parser.add_argument(
        "--placements", nargs="+", choices=PLACEMENTS, default=[p for p in PLACEMENTS if p != "parallel_ln"]
    )
    parser.add_argument(
        "--train-adapters",
        nargs="+",
        default=["houlsby:8", "houlsby:16"],
        help="adapters in the training comparison, as placement:bottleneck (houlsby:8 has LoRA r8's parameter count)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice). On a CPU shared with other jobs, 1 avoids OpenMP "
        "barriers that wait for a descheduled thread after every op (see benchmarks/README.md)",
    )
    parser.add_argument("--memory-steps", type=int, default=2, help="training steps inside the peak-memory window")
    parser.add_argument(
        "--rss-check",
        nargs="*",
        default=None,
        help="models whose CPU peak memory is cross-checked by peak RSS in a subprocess per configuration "
        "(default: vit-b16 on a full CPU fp32 run; give no names to turn it off)",
    )
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    if args.models is None:
        args.models = ["tiny-vit"] if args.quick else ["vit-b16", "clip-l14"]
    if args.rss_check is None:
        full_cpu_run = args.device == "cpu" and args.dtype == "fp32" and not args.quick
        args.rss_check = ["vit-b16"] if full_cpu_run else []
    return args


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers came from; on a shared machine the load average says how noisy they are."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "load_average_start": os.getloadavg(),
    }
    description = f"{cpu}, {info['cpu_count']} CPUs visible, torch using {info['torch_threads']} threads"
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        description = f"{info['gpu']}; host {description}"
    info["description"] = description
    return info


def _inputs(arch: Architecture, batch_size: int, device: torch.device, dtype: torch.dtype):
    size = arch.vision_config().image_size
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch_size, 3, size, size, generator=generator).to(device=device, dtype=dtype)
    labels = torch.randint(0, NUM_LABELS, (batch_size,), generator=generator).to(device)
    return pixel_values, labels


def _flops(arch: Architecture, method: Method, batch_size: int) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) of `method`, counted on meta tensors."""
    model = build_on_meta(arch, method)
    pixel_values, labels = _inputs(arch, batch_size, torch.device("meta"), torch.float32)
    forward = count_flops(model, pixel_values, None)
    return forward, (count_flops(model, pixel_values, labels) if method.kind != "base" else forward)


def _param_row(model: nn.Module, method: Method, base_params: int) -> dict[str, Any]:
    trainable, _ = count_parameters(model)
    return {
        "method": method.name,
        "kind": method.kind,
        "placement": method.placement,
        "size": method.size,
        "trainable_params": trainable,
        "trainable_pct": 100 * trainable / base_params,
    }


def benchmark_inference(
    arch: Architecture, base: nn.Module, methods: list[Method], args: argparse.Namespace, batch_size: int, repeats: int
) -> list[dict[str, Any]]:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    base_params = count_parameters(base)[1]
    models = {method: (base if method is BASE else build_variant(base, arch, method)) for method in methods}
    pixel_values, _ = _inputs(arch, batch_size, device, dtype)
    runs = {method.name: inference_call(model, pixel_values) for method, model in models.items()}
    timings = interleaved_times(runs, repeats, args.warmup, device)
    times, cpu = timings.wall, timings.cpu
    base_flops = _flops(arch, BASE, batch_size)[0]
    rows = []
    for method, model in models.items():
        row = _param_row(model, method, base_params) if method is not BASE else _param_row(base, method, base_params)
        if method is BASE:
            row.update(trainable_params=0, trainable_pct=0.0)
        forward_flops = _flops(arch, method, batch_size)[0]
        row.update(
            latency_s=Spread.of(times[method.name]).as_dict(),
            ratio=paired_ratios(times[method.name], times[BASE.name]).as_dict(),
            cpu_time_ratio=paired_ratios(cpu[method.name], cpu[BASE.name]).as_dict() if device.type == "cpu" else None,
            forward_flops=forward_flops,
            flop_ratio=forward_flops / base_flops,
        )
        rows.append(row)
    return rows


def benchmark_training(
    arch: Architecture, base: nn.Module, methods: list[Method], args: argparse.Namespace, batch_size: int, repeats: int
) -> list[dict[str, Any]]:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    base_params = count_parameters(base)[1]
    models = {method: build_variant(base, arch, method) for method in methods}
    pixel_values, labels = _inputs(arch, batch_size, device, dtype)
    rows = {method: _param_row(model, method, base_params) for method, model in models.items()}
    for method, model in models.items():  # memory first, each with a fresh optimizer inside the window
        step = training_step(model, pixel_values, labels)
        rows[method]["peak_bytes"] = peak_training_bytes(
            model, step, args.memory_steps, device, (pixel_values, labels)
        )
        del step
        gc.collect()
    steps = {method.name: training_step(model, pixel_values, labels) for method, model in models.items()}
    timings = interleaved_times(steps, repeats, args.warmup, device)
    times, cpu = timings.wall, timings.cpu
    del steps, models
    gc.collect()

    full, low_rank = FULL, lora(LORA_RANK)
    flops = {method: _flops(arch, method, batch_size) for method in methods}
    for method, row in rows.items():
        forward, train = flops[method]
        row.update(
            step_s=Spread.of(times[method.name]).as_dict(),
            ratio_to_full=paired_ratios(times[method.name], times[full.name]).as_dict(),
            ratio_to_lora=paired_ratios(times[method.name], times[low_rank.name]).as_dict(),
            cpu_time_ratio_to_full=paired_ratios(cpu[method.name], cpu[full.name]).as_dict(),
            cpu_time_ratio_to_lora=paired_ratios(cpu[method.name], cpu[low_rank.name]).as_dict(),
            forward_flops=forward,
            train_flops=train,
            backward_to_forward_flops=(train - forward) / forward,
            flop_ratio_to_full=train / flops[full][1],
            flop_ratio_to_lora=train / flops[low_rank][1],
            peak_ratio_to_full=row["peak_bytes"] / rows[full]["peak_bytes"],
        )
        if arch.key in args.rss_check:
            spec = method_spec(method.kind, method.size, method.placement)
            row["peak_rss_growth"] = measure_in_subprocess(
                arch.key, spec, batch_size, args.memory_steps, torch.get_num_threads()
            )
    if arch.key in args.rss_check:
        for row in rows.values():
            row["rss_ratio_to_full"] = row["peak_rss_growth"] / rows[full]["peak_rss_growth"]
    return list(rows.values())


def benchmark_architecture(arch: Architecture, args: argparse.Namespace) -> dict[str, Any]:
    batch_size, repeats = DEFAULTS[args.device][arch.key]
    batch_size, repeats = args.batch_size or batch_size, args.repeats or repeats
    base = build_base(arch, args.device, DTYPES[args.dtype])
    inference_methods = [BASE] + [adapter(p, b) for p in args.placements for b in args.bottlenecks]
    training_methods = [FULL, lora(LORA_RANK)] + [
        adapter(spec.split(":")[0], int(spec.split(":")[1])) for spec in args.train_adapters
    ]
    print(f"[{arch.key}] inference: {len(inference_methods)} variants x {repeats} rounds, batch {batch_size}")
    inference = benchmark_inference(arch, base, inference_methods, args, batch_size, repeats)
    print(f"[{arch.key}] training: {len(training_methods)} variants x {repeats} rounds, batch {batch_size}")
    training = benchmark_training(arch, base, training_methods, args, batch_size, repeats)
    return {
        "key": arch.key,
        "label": arch.label,
        "batch_size": batch_size,
        "image_size": arch.vision_config().image_size,
        "repeats": repeats,
        "warmup": args.warmup,
        "base_params": count_parameters(base)[1],
        "inference": inference,
        "training": training,
    }


def check_targets(architectures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, for ViT-B/16 on the CPU at batch 4, judged on medians of paired wall-clock ratios."""
    arch = next((a for a in architectures if a["key"] == "vit-b16"), None)
    if arch is None:
        return []
    name = adapter("houlsby", 16).name
    inference = next((row for row in arch["inference"] if row["method"] == name), None)
    training = next((row for row in arch["training"] if row["method"] == name), None)
    targets = []

    def add(measure: str, bound: float, spread: dict[str, float] | None, note: str = "") -> None:
        if spread is not None:
            measured = f"{spread['median']:.3f} ({spread['min']:.3f}–{spread['max']:.3f}){note}"
            targets.append(
                {"measure": measure, "target": f"<= {bound}", "measured": measured, "met": spread["median"] <= bound}
            )

    def cpu_note(spread: dict[str, float] | None) -> str:
        return "" if spread is None else f"; CPU time {spread['median']:.3f} ({spread['min']:.3f}–{spread['max']:.3f})"

    if inference:
        note = f"; FLOP bound {inference['flop_ratio']:.4f}" + cpu_note(inference["cpu_time_ratio"])
        add("adapter inference (houlsby b16) × base", 1.03, inference["ratio"], note)
    if training:
        note = f"; FLOP ratio {training['flop_ratio_to_full']:.3f}" + cpu_note(training["cpu_time_ratio_to_full"])
        add("adapter training step (houlsby b16) × full FT", 0.70, training["ratio_to_full"], note)
        note = f"; FLOP ratio {training['flop_ratio_to_lora']:.3f}" + cpu_note(training["cpu_time_ratio_to_lora"])
        add(f"adapter training step (houlsby b16) × LoRA r{LORA_RANK}", 1.0, training["ratio_to_lora"], note)
        ratio = training["peak_ratio_to_full"]
        add("adapter training peak memory (houlsby b16) × full FT", 0.6, {"median": ratio, "min": ratio, "max": ratio})
    return targets


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device.")
    command = " ".join(["python", "benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {
        "machine": machine_info(device),
        "settings": {
            "command": command,
            "device": args.device,
            "dtype": args.dtype,
            "quick": args.quick,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "num_labels": NUM_LABELS,
    }
    results["architectures"] = [benchmark_architecture(ARCHITECTURES[key], args) for key in args.models]
    results["machine"]["load_average_end"] = os.getloadavg()
    start, end = results["machine"]["load_average_start"], results["machine"]["load_average_end"]
    results["machine"]["description"] += f"; load average {start[0]:.2f} at start, {end[0]:.2f} at end"
    results["targets"] = check_targets(results["architectures"])
    stem = "speed-quick" if args.quick else f"speed-{args.device}"
    paths = report.write(results, args.out, stem)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(path) for path in paths.values()))
    if args.quick:
        print(QUICK_CAVEAT)
    return paths


if __name__ == "__main__":
    main()
