"""Which of our modules holds the adapter of block `i` at a site, so converters copy weights without key names.

Sites: `"attention_output"` (after the attention output projection), `"ffn_output"` (after the FFN output
projection), `"block_output"` (the block's output, after the FFN residual add) and `"ffn_parallel"` (the branch
beside the FFN).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
from torch import nn

from ..layer import PARALLEL, AdapterLayer


class Site(NamedTuple):
    """The trainable parts of one adapter: its projections and, when it has one, its trainable scale."""

    down: nn.Linear
    up: nn.Linear
    scale: torch.Tensor | None


# Module names inside a block, as `targets.BLOCK_LAYOUTS` targets them (transformers >= 5.9), by site.
_SEQUENTIAL_SITES = {
    "": "block_output",
    "attention.o_proj": "attention_output",
    "self_attn.out_proj": "attention_output",
    "mlp.fc2": "ffn_output",
}


def adapter_sites(model: nn.Module, adapter_name: str) -> dict[tuple[int, str], Site]:
    """`{(block_index, site): Site}` for every module of `model` that holds `adapter_name`.

    Written against the method's current layout: `houlsby` wraps `...layers.{i}.attention.o_proj` and
    `...layers.{i}.mlp.fc2`, `pfeiffer` the block `...layers.{i}`, `parallel` the block's `...layers.{i}.mlp`.
    TODO: this moves to the method's own `hf_vit_adapter.sites.adapter_sites` when that lands; callers only use
    the returned mapping.
    """
    sites: dict[tuple[int, str], Site] = {}
    for name, module in model.named_modules():
        if not isinstance(module, AdapterLayer) or adapter_name not in module.bottleneck_down:
            continue
        match = re.search(r"(?:^|\.)layers?\.(\d+)((?:\.[\w.]+)?)$", name)
        if match is None:
            raise ValueError(f"Cannot tell which block the adapter module {name!r} belongs to.")
        # A module wrapped by one adapter and then by another sits under `base_layer`.
        inner = ".".join(part for part in match.group(2).split(".") if part and part != "base_layer")
        if module.bottleneck_mode[adapter_name] == PARALLEL:
            site = "ffn_parallel"
        elif inner in _SEQUENTIAL_SITES:
            site = _SEQUENTIAL_SITES[inner]
        else:
            raise ValueError(f"Cannot tell which site of its block the adapter module {name!r} is.")
        key = (int(match.group(1)), site)
        if key in sites:
            raise ValueError(f"Two modules hold adapter {adapter_name!r} at block {key[0]}, site {site!r}.")
        sites[key] = Site(module.bottleneck_down[adapter_name], module.bottleneck_up[adapter_name], None)
    return sites
