"""Adapter sites: the places inside a transformer block where an adapter reads and adds, and a helper to find them.

Every placement is a set of sites. One tuner layer per block owns all of that block's sites, for all adapters, so any
mix of placements can share a model without one adapter wrapping another (see `layer.py`). In a block with input
`x`, stream `x1` after the attention residual add and output `h` (pre-norm: `x1 = x + Attn(LN(x))`,
`h = x1 + FFN(LN(x1))`; `A = up(act(down(.)))`, `s` the scaling):

| site | reads | adds to |
|---|---|---|
| `attention_output` | the attention output projection's output `a` | `a` (inside the attention branch) |
| `ffn_output` | the FFN output projection's (fc2's) output `f` | `f` (inside the FFN branch) |
| `ffn_parallel` | the stream `x1` entering the FFN sub-block, before its LayerNorm | the block output, beside FFN |
| `ffn_parallel_ln` | the FFN's own input `LN(x1)` | the FFN's output (0.1.0's `parallel`) |
| `block_output` | the block output `h` | `h` |

With several adapters active at once, each site adds the sum of their outputs (all read the same input), and
`ffn_parallel` adds before `block_output` reads. Adapters given explicit `target_modules` that are not blocks of a
known family use two module-level sites on the module they name: `module_output` (reads and adds to its output) and
`module_parallel` (reads its input, adds to its output).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .targets import BlockLayout, block_numbers

BLOCK_SITES = ("attention_output", "ffn_output", "ffn_parallel", "ffn_parallel_ln", "block_output")
MODULE_SITES = ("module_output", "module_parallel")
SITES = BLOCK_SITES + MODULE_SITES

# The sites each placement puts into every block.
PLACEMENT_SITES: dict[str, tuple[str, ...]] = {
    "houlsby": ("attention_output", "ffn_output"),
    "ffn": ("ffn_output",),
    "pfeiffer": ("block_output",),
    "parallel": ("ffn_parallel",),
    "parallel_ln": ("ffn_parallel_ln",),
}
# Placements whose adapters read something other than what they add to; on an explicit module they read its input.
PARALLEL_PLACEMENTS = ("parallel", "parallel_ln")

SCALE_PARAMETER_NAME = "scale"
"""Name of the trainable scaling parameter of a `scaling="learned"` or `"channel"` adapter: the last part of its
parameter name (`...bottleneck_block_output.default.scale`). Exclude it from weight decay like a bias."""


def module_site(placement: str) -> str:
    """The site an adapter of `placement` gets on a module named explicitly in `target_modules`."""
    return "module_parallel" if placement in PARALLEL_PLACEMENTS else "module_output"


@dataclass(frozen=True)
class Site:
    """One adapter at one site: `delta = scale * up(act(down(source)))` (scale: the parameter, or the config's
    float `scaling` when `scale` is None)."""

    down: nn.Linear
    up: nn.Linear
    scale: nn.Parameter | None


def adapter_sites(model: nn.Module, adapter_name: str = "default") -> dict[tuple[int, str], Site]:
    """The sites of `adapter_name` in `model` (a `PeftModel` or a model with injected adapters), keyed by
    `(block index, site name)`.

    The block index counts the model's transformer blocks in module order from 0 (Swin: across all stages, so block
    `M` of stage `N` comes after every block of the earlier stages), as `layers_to_transform` does
    (`targets.block_numbers`). Site names are those of `BLOCK_SITES`; adapters on explicitly named non-block modules
    are not listed. Writing into `down`, `up` and `scale` (under `torch.no_grad()`) sets the adapter's weights, which
    is how converters place weights from other libraries.
    """
    from .layer import AdapterLayer  # the layer imports this module's names

    sites: dict[tuple[int, str], Site] = {}
    numbers: dict[BlockLayout, dict[str, int]] = {}
    for name, module in model.named_modules():
        layout = getattr(module, "block_layout", None)
        if not isinstance(module, AdapterLayer) or layout is None:
            continue
        if layout not in numbers:
            numbers[layout] = block_numbers(model, layout)
        number = numbers[layout][name]
        for site in BLOCK_SITES:
            bottlenecks = getattr(module, f"bottleneck_{site}")
            if adapter_name in bottlenecks:
                bottleneck = bottlenecks[adapter_name]
                sites[(number, site)] = Site(bottleneck.down, bottleneck.up, bottleneck.scale)
    return sites
