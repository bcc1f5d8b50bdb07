"""How the benchmark measures: interleaved wall-clock timing, FLOPs, and peak training memory."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements: the median resists the spikes of a shared machine."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Seconds per call of each run: wall clock, and CPU time of this process (all its threads).

    On a CPU shared with other jobs, being descheduled inflates wall time but hardly CPU time, so the CPU-time
    ratios are the steadier of the two there (OpenMP spin-waits count as CPU time, so they are not a pure count
    of useful work either). On CUDA only the wall clock means anything.
    """

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def interleaved_times(runs: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> Timings:
    """Time each run `repeats` times, A B C A B C ..., so that drift in the machine's load hits all alike.

    Round `i` of every run is taken back to back, which makes `wall[x][i] / wall[base][i]` a paired ratio.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    synchronize(device)
    timings = Timings({name: [] for name in runs}, {name: [] for name in runs})
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            synchronize(device)
            timings.cpu[name].append(time.process_time() - cpu)
            timings.wall[name].append(time.perf_counter() - wall)
    return timings


def paired_ratios(numerator: list[float], denominator: list[float]) -> Spread:
    return Spread.of([a / b for a, b in zip(numerator, denominator, strict=True)])


def inference_call(model: nn.Module, pixel_values: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(pixel_values=pixel_values)

    return run


def training_step(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, lr: float = 1e-5
) -> Callable[[], None]:
    """One optimisation step: forward, cross-entropy, backward, AdamW over the trainable parameters, zero_grad.

    Each call of this function makes a fresh optimizer, so its state is allocated inside a measured window.
    """
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def run() -> None:
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def count_flops(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> int:
    """Matmul/convolution/attention FLOPs of a forward (`labels=None`) or of forward + loss + backward.

    The backward is counted as autograd runs it, so a frozen weight whose gradient is skipped adds nothing: this is
    the check that `requires_grad=False` really saves the weight-gradient matmuls. Works on meta tensors.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        if labels is None:
            with torch.no_grad():
                model(pixel_values=pixel_values)
        else:
            model(pixel_values=pixel_values, labels=labels).loss.backward()
    return counter.get_total_flops()


def tensor_bytes(*objects: nn.Module | torch.Tensor) -> int:
    """Bytes of the distinct storages behind the parameters and buffers of modules (and of loose tensors)."""
    storages: dict[int, int] = {}
    for obj in objects:
        tensors = itertools.chain(obj.parameters(), obj.buffers()) if isinstance(obj, nn.Module) else [obj]
        for tensor in tensors:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def peak_training_bytes(
    model: nn.Module, step: Callable[[], None], steps: int, device: torch.device, inputs: tuple[torch.Tensor, ...] = ()
) -> int:
    """Peak bytes of live tensors while training: weights, buffers and `inputs`, plus the most that `steps` calls of
    `step` (a fresh optimizer's state, gradients, saved activations, temporaries) held at once above that.

    CUDA reads the caching allocator's counters; CPU replays the allocation/free events that `torch.profiler`
    records with `profile_memory=True`. Both count tensor bytes, so the CPU number is the analogue of
    `torch.cuda.max_memory_allocated` and is not blurred by malloc's caching or by other models in the process.
    """
    resident = tensor_bytes(model, *inputs)
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(steps):
            step()
        synchronize(device)
        return resident + torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            step()
    # The public `prof.events()` folds allocations into the ops that made them; the raw records keep every one.
    events = sorted(
        (event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"),
        key=lambda event: event.start_ns(),
    )
    live = itertools.accumulate((event.nbytes() for event in events), initial=0)
    return resident + max(live)
