"""The adapter layer: one PEFT tuner layer per transformer block that owns every adapter site of that block.

Design. PEFT's `inject_adapter` never looks inside an existing tuner layer, and a tuner layer nested in another puts
`base_layer.` into its keys. So adapters of different placements must never wrap one another. Here each block of a
known model family is wrapped once, by the first adapter that needs it, and every later adapter of any placement calls
`update_layer` on that same wrapper, which keeps one `ModuleDict` per site (`bottleneck_<site>`, keyed by adapter
name; sites in `sites.py`). The wrapper reaches the block's inner sites with forward hooks on the block's own modules
(the attention output projection, fc2, the pre-FFN LayerNorm, the FFN), installed once when it wraps the block; the
block's output sites it applies itself. Base keys are untouched, adapter keys depend only on the block and the site,
so an adapter saves the same keys whatever else shares the model.

Every forward first fixes a plan (which adapters run, on which rows for mixed batches) and hands it through the
block's run; the hooks read the plan and the inputs they stash (the FFN's input, the stream before the FFN's
LayerNorm) only within that run. Under gradient checkpointing the wrapper checkpoints the block itself with the plan
bound into the checkpointed function, so the recomputation in backward sees the same plan and re-stashes the same
inputs even if `set_adapter` or `disable_adapter` changed things in between.

A module named in explicit `target_modules` that is not a block of a known family gets a wrapper of the same class
with the module-level sites (`module_output`, `module_parallel`) and no hooks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.activations import ACT2FN

from .config import AdapterConfig
from .sites import PLACEMENT_SITES, SCALE_PARAMETER_NAME, SITES, module_site
from .stochastic_depth import drop_path
from .targets import BlockLayout

Plan = tuple[tuple[str, tuple[int, ...] | None], ...]
"""The adapters a forward runs, each with the batch rows it applies to (None: every row)."""


class Bottleneck(nn.Module):
    """One adapter at one site: `s * DropPath(up(dropout(act(down(x)))))`."""

    def __init__(self, width: int, config: AdapterConfig) -> None:
        super().__init__()
        self.down = nn.Linear(width, config.bottleneck_size)
        self.act = ACT2FN[config.non_linearity]
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.up = nn.Linear(config.bottleneck_size, width)
        self.drop_path = config.drop_path
        if config.scaling in ("learned", "channel"):
            shape = (1,) if config.scaling == "learned" else (width,)
            self.register_parameter(SCALE_PARAMETER_NAME, nn.Parameter(torch.ones(shape)))
            self.scaling = 1.0
        else:
            self.register_parameter(SCALE_PARAMETER_NAME, None)
            self.scaling = float(config.scaling)

    @torch.no_grad()
    def reset_parameters(self, init_weights: bool | str) -> None:
        if self.scale is not None:
            self.scale.fill_(1.0)
        if init_weights is False:
            return  # keep nn.Linear's default init for both projections
        if init_weights is True:
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
            return
        std = 0.01 if init_weights == "houlsby" else 0.02
        for projection in (self.down, self.up):
            nn.init.trunc_normal_(projection.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(projection.bias)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """The adapter's output for `source`, computed in the adapter's dtype and returned in the source's."""
        hidden = source.to(self.down.weight.dtype) if source.dtype != self.down.weight.dtype else source
        delta = self.up(self.dropout(self.act(self.down(hidden))))
        if self.training and self.drop_path > 0:
            delta = drop_path(delta, self.drop_path)
        if self.scale is not None:
            delta = delta * self.scale
        elif self.scaling != 1.0:
            delta = delta * self.scaling
        return delta.to(source.dtype)


def _split_output(output: Any) -> tuple[torch.Tensor, tuple | None]:
    """Blocks may return a tuple whose first element is the hidden state (Swin does)."""
    if isinstance(output, tuple):
        return output[0], output[1:]
    return output, None


def _join_output(hidden: torch.Tensor, rest: tuple | None) -> Any:
    return hidden if rest is None else (hidden, *rest)


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    if args:
        return args[0]
    return kwargs.get("hidden_states", kwargs.get("input"))


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


class AdapterLayer(BaseTunerLayer):
    """PEFT tuner-layer mixin: the per-site, per-adapter bottlenecks of one block (or one explicitly named module)."""

    adapter_layer_names = tuple(f"bottleneck_{site}" for site in SITES)
    other_param_names = ()

    def __init__(self, base_layer: nn.Module, block_layout: BlockLayout | None, name: str, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.block_layout = block_layout
        self.module_name = name
        for layer_name in self.adapter_layer_names:
            setattr(self, layer_name, nn.ModuleDict({}))
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.kwargs = kwargs
        self._plan: Plan | None = None  # set only while this layer's block runs
        self._sources: dict[str, torch.Tensor] = {}  # inputs stashed by the hooks during that run
        self.in_features, self.out_features = self._widths()

    def _widths(self) -> tuple[int, int]:
        """The wrapped module's input and output widths (a block's: its hidden size)."""
        if self.block_layout is not None:
            width = self._inner(self.block_layout.ffn_output, "the FFN output projection").out_features
            return width, width
        linears = _linears(self.base_layer)
        return linears[0].in_features, linears[-1].out_features

    def _inner(self, path: str, role: str) -> nn.Module:
        try:
            return self.base_layer.get_submodule(path)
        except AttributeError:
            raise ValueError(
                f"Cannot place adapters in `{self.module_name}` ({type(self.base_layer).__name__}): it has no "
                f"`{path}` ({role}). Pass `target_modules` naming the modules to adapt."
            ) from None

    def sites_for(self, placement: str) -> tuple[str, ...]:
        return PLACEMENT_SITES[placement] if self.block_layout is not None else (module_site(placement),)

    def _site_width(self, site: str) -> int:
        layout = self.block_layout
        if site == "attention_output":
            return self._inner(layout.attention_output, "the attention output projection").out_features
        if site == "ffn_parallel_ln":
            width_in = _linears(self._inner(layout.ffn_input, "the FFN"))[0].in_features
            width_out = _linears(self._inner(layout.ffn_result, "the FFN"))[-1].out_features
            if width_in != width_out:
                raise ValueError(f"The FFN of `{self.module_name}` maps {width_in} to {width_out} channels.")
            return width_in
        if site == "module_parallel" and self.in_features != self.out_features:
            raise ValueError(
                f"A parallel adapter on `{self.module_name}` reads its {self.in_features}-wide input and must add to "
                f"its {self.out_features}-wide output; target a module whose input and output widths match (for "
                "example the whole MLP or its output projection), or leave target_modules=None for AdaptFormer's "
                "`parallel` beside each block's FFN."
            )
        return self.out_features

    def update_layer(self, adapter_name: str, config: AdapterConfig) -> None:
        """Build (or rebuild) the adapter called `adapter_name` at the sites its placement uses here."""
        sites = self.sites_for(config.placement)
        widths = {site: self._site_width(site) for site in sites}  # validates all before changing anything
        for site in sites:
            bottleneck = Bottleneck(widths[site], config)
            bottleneck.reset_parameters(config.init_weights)
            getattr(self, f"bottleneck_{site}")[adapter_name] = bottleneck
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _get_base_layer_device_and_dtype(self, base_layer: nn.Module) -> tuple[torch.device | None, Any]:
        """A block has no `weight`: take the device and dtype of its first floating-point parameter."""
        for parameter in base_layer.parameters():
            if parameter.is_floating_point():
                return parameter.device, parameter.dtype
        return None, None

    def adapter_names_here(self) -> set[str]:
        return self._get_available_adapters()

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(_NO_MERGE_MESSAGE)

    def unmerge(self) -> None:
        raise ValueError(_NO_MERGE_MESSAGE)


_NO_MERGE_MESSAGE = (
    "Bottleneck adapters cannot be merged into the base weights: `up(act(down(h)))` is non-linear. "
    "Keep the PeftModel for inference, or call `unload()` to get the untouched base model back."
)


class _AddAtOutput:
    """Forward hook on a module inside a block: adds the site's adapters to its output, reading its output or an
    input stashed earlier in the same run."""

    def __init__(self, layer: AdapterLayer, site: str, reads_stash: bool) -> None:
        self.layer, self.site, self.reads_stash = layer, site, reads_stash

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        layer = self.layer
        if layer._plan is None or not getattr(layer, f"bottleneck_{self.site}"):
            return None
        hidden, rest = _split_output(output)
        source = layer._sources.get(self.site) if self.reads_stash else hidden
        return _join_output(layer._add(self.site, hidden, source), rest)


class _StashInput:
    """Forward pre-hook on a module inside a block: keeps its input for a site that reads it later in the run."""

    def __init__(self, layer: AdapterLayer, site: str) -> None:
        self.layer, self.site = layer, site

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        layer = self.layer
        if layer._plan is not None and getattr(layer, f"bottleneck_{self.site}"):
            layer._sources[self.site] = _first_input(args, kwargs)


_HOOK_TYPES = (_AddAtOutput, _StashInput)


class AdapterWrapper(nn.Module, AdapterLayer):
    """Wraps a transformer block (or an explicitly named module) and runs the active adapters at its sites."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: AdapterConfig,
        block_layout: BlockLayout | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        AdapterLayer.__init__(self, base_layer, block_layout, name, **kwargs)
        self._active_adapter = adapter_name
        if block_layout is not None:
            self._install_hooks(block_layout)
        self.update_layer(adapter_name, config)

    def _install_hooks(self, layout: BlockLayout) -> None:
        """Hook the block's inner modules that exist (a missing one fails only when a placement needs it)."""

        def inner(path: str) -> nn.Module | None:
            try:
                return self.base_layer.get_submodule(path)
            except AttributeError:
                return None

        for path, site in ((layout.attention_output, "attention_output"), (layout.ffn_output, "ffn_output")):
            if (module := inner(path)) is not None:
                module.register_forward_hook(_AddAtOutput(self, site, reads_stash=False))
        if (module := inner(layout.ffn_stream)) is not None:
            module.register_forward_pre_hook(_StashInput(self, "ffn_parallel"), with_kwargs=True)
        if (module := inner(layout.ffn_input)) is not None:
            module.register_forward_pre_hook(_StashInput(self, "ffn_parallel_ln"), with_kwargs=True)
        if (module := inner(layout.ffn_result)) is not None:
            module.register_forward_hook(_AddAtOutput(self, "ffn_parallel_ln", reads_stash=True))

    def remove_hooks(self) -> None:
        """Take this layer's hooks off the block's modules (when the block is handed back by `unload`)."""
        for module in self.base_layer.modules():
            for hooks in (module._forward_hooks, module._forward_pre_hooks):
                ours = [key for key, hook in hooks.items() if isinstance(hook, _HOOK_TYPES) and hook.layer is self]
                for key in ours:
                    del hooks[key]
                    module._forward_pre_hooks_with_kwargs.pop(key, None)

    def unload_and_optionally_merge_module(self, merge: bool, safe_merge: bool, adapter_names: Any) -> nn.Module:
        """Called by PEFT's `unload`: the block comes back as it was, without our hooks."""
        if merge:
            raise ValueError(_NO_MERGE_MESSAGE)
        self.remove_hooks()
        return self.base_layer

    def _make_plan(self, adapter_names: list[str] | None) -> Plan:
        here = self._get_available_adapters()
        if self.disable_adapters:
            return ()
        if adapter_names is None:
            return tuple((name, None) for name in self.active_adapters if name in here)
        plan = []
        for name in dict.fromkeys(adapter_names):
            if name in here:
                plan.append((name, tuple(i for i, row_name in enumerate(adapter_names) if row_name == name)))
        return tuple(plan)

    def forward(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        plan = self._make_plan(adapter_names)
        if not plan:
            return self.base_layer(*args, **kwargs)
        base = self.base_layer
        if getattr(base, "gradient_checkpointing", False) and base.training and torch.is_grad_enabled():
            # Checkpoint here rather than in the block, so the recomputation runs with this forward's plan.
            run = partial(self._run, plan, True, **kwargs)
            return base._gradient_checkpointing_func(run, *args)
        return self._run(plan, False, *args, **kwargs)

    def _run(self, plan: Plan, checkpointed: bool, *args: Any, **kwargs: Any) -> Any:
        outer = (self._plan, self._sources)
        self._plan, self._sources = plan, {}
        try:
            with _without_checkpointing(self.base_layer) if checkpointed else nullcontext():
                output = self.base_layer(*args, **kwargs)
            hidden, rest = _split_output(output)
            if self.block_layout is not None:
                hidden = self._add("ffn_parallel", hidden, self._sources.get("ffn_parallel"))
                hidden = self._add("block_output", hidden, hidden)
            else:
                hidden = self._add("module_parallel", hidden, _first_input(args, kwargs))
                hidden = self._add("module_output", hidden, hidden)
            return _join_output(hidden, rest)
        finally:
            self._plan, self._sources = outer

    def _add(self, site: str, hidden: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        """`hidden` plus the output of each planned adapter at `site` on `source` (rows of mixed batches apart)."""
        bottlenecks = getattr(self, f"bottleneck_{site}")
        if not bottlenecks:
            return hidden
        if source is None:
            raise TypeError(f"The adapters at `{self.module_name}` ({site}) found no input tensor to read.")
        if not isinstance(hidden, torch.Tensor):
            raise TypeError(
                f"`{self.module_name}` returned {type(hidden).__name__}, which an adapter cannot add to; target a "
                "module that returns a tensor (or a tuple with a tensor first), such as an nn.Linear or a block."
            )
        result = hidden
        for name, rows in self._plan or ():
            if name not in bottlenecks:
                continue
            if rows is None:
                result = result + bottlenecks[name](source)
            else:
                index = torch.tensor(rows, device=hidden.device)
                result = result.index_add(0, index, bottlenecks[name](source.index_select(0, index)))
        return result

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


@contextmanager
def _without_checkpointing(block: nn.Module):
    """Let `block` run plainly inside our own checkpoint (a nested one would recompute it outside our plan)."""
    block.gradient_checkpointing = False
    try:
        yield
    finally:
        block.gradient_checkpointing = True
