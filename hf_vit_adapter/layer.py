"""The adapter layer: wraps a module and adds `s * up(act(down(.)))` to its output."""

from __future__ import annotations

import math
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.activations import ACT2FN

from .config import AdapterConfig

SEQUENTIAL = "sequential"  # reads the wrapped module's output (houlsby, ffn, pfeiffer)
PARALLEL = "parallel"  # reads the wrapped module's input (AdaptFormer)


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def feature_size(module: nn.Module, mode: str) -> int:
    """Width `d` the adapter works on: the output width (sequential) or input width (parallel) of `module`.

    For a container such as a whole block, the last `nn.Linear` gives the output width and the first the input width.
    """
    linears = _linears(module)
    if not linears:
        raise TypeError(
            f"Cannot adapt {type(module).__name__}: it holds no nn.Linear to read its width from. "
            "Target nn.Linear layers or modules that contain them."
        )
    return linears[0].in_features if mode == PARALLEL else linears[-1].out_features


def _split_output(output: Any) -> tuple[torch.Tensor, tuple | None]:
    """Blocks may return a tuple whose first element is the hidden state."""
    if isinstance(output, tuple):
        return output[0], output[1:]
    return output, None


def _join_output(hidden: torch.Tensor, rest: tuple | None) -> Any:
    return hidden if rest is None else (hidden, *rest)


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise TypeError("A parallel adapter needs the wrapped module's input as its first argument or `hidden_states`.")


class AdapterLayer(BaseTunerLayer):
    """PEFT tuner-layer mixin that holds the per-adapter projections of one adapted module."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act", "bottleneck_dropout", "bottleneck_scaling", "bottleneck_mode")

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.bottleneck_down = nn.ModuleDict({})
        self.bottleneck_up = nn.ModuleDict({})
        self.bottleneck_act = nn.ModuleDict({})
        self.bottleneck_dropout = nn.ModuleDict({})
        self.bottleneck_scaling: dict[str, float] = {}
        self.bottleneck_mode: dict[str, str] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.kwargs = kwargs

    def update_layer(self, adapter_name: str, config: AdapterConfig) -> None:
        """Build (or rebuild) the adapter called `adapter_name` on this module."""
        mode = PARALLEL if config.placement == "parallel" else SEQUENTIAL
        width = feature_size(self.get_base_layer(), mode)
        self.bottleneck_mode[adapter_name] = mode
        self.bottleneck_scaling[adapter_name] = config.scaling
        self.bottleneck_down[adapter_name] = nn.Linear(width, config.bottleneck_size)
        self.bottleneck_up[adapter_name] = nn.Linear(config.bottleneck_size, width)
        self.bottleneck_act[adapter_name] = ACT2FN[config.non_linearity]
        self.bottleneck_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.reset_adapter_parameters(adapter_name, config.init_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    @torch.no_grad()
    def reset_adapter_parameters(self, adapter_name: str, init_weights: bool | str) -> None:
        down, up = self.bottleneck_down[adapter_name], self.bottleneck_up[adapter_name]
        if init_weights is False:
            return  # keep nn.Linear's default init for both projections
        if init_weights is True:
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
            return
        std = 0.01 if init_weights == "houlsby" else 0.02
        for projection in (down, up):
            nn.init.trunc_normal_(projection.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(projection.bias)

    def _adapter_delta(self, adapter_name: str, source: torch.Tensor) -> torch.Tensor:
        """`s * up(dropout(act(down(source))))`, computed in the adapter's dtype and returned in the source's."""
        down = self.bottleneck_down[adapter_name]
        hidden = down(self._cast_input_dtype(source, down.weight.dtype))
        hidden = self.bottleneck_dropout[adapter_name](self.bottleneck_act[adapter_name](hidden))
        delta = self.bottleneck_up[adapter_name](hidden)
        scaling = self.bottleneck_scaling[adapter_name]
        if scaling != 1.0:
            delta = delta * scaling
        return delta.to(source.dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(_NO_MERGE_MESSAGE)

    def unmerge(self) -> None:
        raise ValueError(_NO_MERGE_MESSAGE)


_NO_MERGE_MESSAGE = (
    "Bottleneck adapters cannot be merged into the base weights: `up(act(down(h)))` is non-linear. "
    "Keep the PeftModel for inference, or call `unload()` to get the untouched base model back."
)


class AdapterWrapper(nn.Module, AdapterLayer):
    """Wraps a module (an `nn.Linear`, an MLP or a whole block) and runs the active adapters after it."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: AdapterConfig, **kwargs: Any) -> None:
        super().__init__()
        AdapterLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def _source(self, adapter_name: str, args: tuple, kwargs: dict, hidden: torch.Tensor) -> torch.Tensor:
        return _first_input(args, kwargs) if self.bottleneck_mode[adapter_name] == PARALLEL else hidden

    def forward(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        if self.disable_adapters:
            return self.base_layer(*args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(*args, adapter_names=adapter_names, **kwargs)
        hidden, rest = _split_output(self.base_layer(*args, **kwargs))
        base_hidden = hidden
        for name in self.active_adapters:
            if name in self.bottleneck_down:
                hidden = hidden + self._adapter_delta(name, self._source(name, args, kwargs, base_hidden))
        return _join_output(hidden, rest)

    def _mixed_batch_forward(self, *args: Any, adapter_names: list[str], **kwargs: Any) -> Any:
        """Each row of the batch uses its own adapter; `"__base__"` rows use none."""
        hidden, rest = _split_output(self.base_layer(*args, **kwargs))
        if len(adapter_names) != hidden.shape[0]:
            raise ValueError(
                f"`adapter_names` has {len(adapter_names)} entries but the batch has {hidden.shape[0]} rows."
            )
        adapted = hidden.clone()
        for name in set(adapter_names):
            if name not in self.bottleneck_down:
                continue  # "__base__", or an adapter that does not touch this module
            rows = [index for index, row_name in enumerate(adapter_names) if row_name == name]
            source = self._source(name, args, kwargs, hidden)
            adapted[rows] = adapted[rows] + self._adapter_delta(name, source[rows])
        return _join_output(adapted, rest)

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()
