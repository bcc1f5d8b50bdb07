"""Cross-check of the CPU peak memory: one training configuration in a fresh process, read from the kernel.

`measure.peak_training_bytes` counts tensor bytes. This counts what the operating system gave the process
(`ru_maxrss`, the resident-set high-water mark) above what it held after its imports, so it also sees malloc's
caching and fragmentation. One process per configuration, because a high-water mark cannot be reset.

Run as a worker: `python benchmarks/peak_rss.py vit-b16 adapter:houlsby:16 --batch-size 4 --steps 2`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

PAGE = resource.getpagesize()


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def method_spec(kind: str, size: int | None, placement: str | None) -> str:
    return ":".join(str(part) for part in (kind, placement, size) if part is not None)


def measure_in_subprocess(arch: str, spec: str, batch_size: int, steps: int, timeout: float = 1800) -> int:
    """Peak RSS growth in bytes of a fresh process that builds `arch` tuned by `spec` and trains `steps` steps."""
    command = [sys.executable, str(Path(__file__).resolve()), arch, spec, f"--batch-size={batch_size}"]
    result = subprocess.run(
        [*command, f"--steps={steps}"], capture_output=True, text=True, timeout=timeout, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth"]


def _worker(arch_key: str, spec: str, batch_size: int, steps: int) -> dict[str, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from benchmarks.measure import training_step
    from benchmarks.models import ARCHITECTURES, NUM_LABELS, Method, apply_method, build_base

    baseline = _current_rss_bytes()  # after importing torch, transformers, peft and the method
    kind, *rest = spec.split(":")
    placement = rest[0] if kind == "adapter" else None
    size = int(rest[-1]) if rest else None
    arch = ARCHITECTURES[arch_key]
    method = Method(kind, size=size, placement=placement)
    model = apply_method(build_base(arch, "cpu", torch.float32), arch, method)  # one copy of the weights
    size_px = arch.vision_config().image_size
    pixel_values = torch.randn(batch_size, 3, size_px, size_px)
    labels = torch.randint(0, NUM_LABELS, (batch_size,))
    step = training_step(model, pixel_values, labels)
    for _ in range(steps):
        step()
    return {"baseline_rss": baseline, "peak_rss": _max_rss_bytes(), "peak_rss_growth": _max_rss_bytes() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch")
    parser.add_argument("method", help="full | lora:8 | adapter:houlsby:16")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(_worker(args.arch, args.method, args.batch_size, args.steps)))


if __name__ == "__main__":
    main()
