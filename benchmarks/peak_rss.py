"""Cross-check of the CPU peak memory: one training configuration in a fresh process, read from the kernel.

`measure.peak_training_bytes` counts tensor bytes. This counts what the operating system gave the process (the
resident-set high-water mark `VmHWM`) above what it held after its imports, so it also sees malloc's caching and
fragmentation. One process per configuration, so no other model's memory is in it. Not `ru_maxrss`: a child
inherits its parent's high-water mark through fork, so every child of a big benchmark process reports the parent's.

Run as a worker: `python benchmarks/peak_rss.py vit-b16 adapter:houlsby:16 --batch-size 4 --steps 2`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def _reset_high_water_mark() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0); harmless where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def method_spec(kind: str, size: int | None, placement: str | None) -> str:
    return ":".join(str(part) for part in (kind, placement, size) if part is not None)


def measure_in_subprocess(
    arch: str, spec: str, batch_size: int, steps: int, threads: int, timeout: float = 1800
) -> int:
    """Peak RSS growth in bytes of a fresh process that builds `arch` tuned by `spec` and trains `steps` steps."""
    command = [sys.executable, str(Path(__file__).resolve()), arch, spec, f"--batch-size={batch_size}"]
    command.append(f"--threads={threads}")
    result = subprocess.run(
        [*command, f"--steps={steps}"], capture_output=True, text=True, timeout=timeout, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_growth"]


def _worker(arch_key: str, spec: str, batch_size: int, steps: int, threads: int | None) -> dict[str, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    if threads:
        torch.set_num_threads(threads)
    from benchmarks.measure import training_step
    from benchmarks.models import ARCHITECTURES, NUM_LABELS, Method, apply_method, build_base

    _reset_high_water_mark()
    baseline = _status_bytes("VmRSS")  # after importing torch, transformers, peft and the method
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
    peak = _status_bytes("VmHWM")
    return {"baseline_rss": baseline, "peak_rss": peak, "peak_rss_growth": peak - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch")
    parser.add_argument("method", help="full | lora:8 | adapter:houlsby:16")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(_worker(args.arch, args.method, args.batch_size, args.steps, args.threads)))


if __name__ == "__main__":
    main()
