"""`AdapterConfig`: the settings of one bottleneck adapter, saved as `adapter_config.json`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal

from peft.config import PeftConfig
from transformers.activations import ACT2FN

from .legacy import PLACEMENT_0_1_0, is_resolved_target_0_1_0
from .peft_type import BOTTLENECK_PEFT_TYPE

PLACEMENTS = ("houlsby", "ffn", "pfeiffer", "parallel", "parallel_ln")
SCALING_MODES = ("learned", "channel")
INIT_SCHEMES = (True, False, "houlsby", "bert")
FORMAT_VERSION = 2
"""Layout of saved adapters: 1 = hf-vit-adapter 0.1.0 (no `format_version` in the file), 2 = one tuner layer per
block, keys `<block>.bottleneck_<site>.{down,up}.{weight,bias}` (see `model.py`)."""

Placement = Literal["houlsby", "ffn", "pfeiffer", "parallel", "parallel_ln"]


@dataclass
class AdapterConfig(PeftConfig):
    """
    Configuration of a bottleneck adapter (Houlsby et al., 2019) for [`AdapterModel`].

    Each adapter is `s * DropPath(up(dropout(act(down(h)))))`, with `down = nn.Linear(d, bottleneck_size)` and
    `up = nn.Linear(bottleneck_size, d)`, added where `placement` says.

    Args:
        bottleneck_size (`int`):
            Width of the bottleneck (`adapter_length` in the ModelScope adapter). Defaults to 64.
        placement (`str`):
            Where the adapters go in each transformer block (`x1` is the stream after the attention residual add):
            - `"houlsby"`: after the attention output projection and after the FFN output projection,
              `h <- h + s * A(h)` (AdapterHub's `DoubleSeqBnConfig`).
            - `"ffn"`: after the FFN output projection only (the ModelScope adapter).
            - `"pfeiffer"`: on the block output after the FFN residual add (AdapterHub's `SeqBnConfig`, Adapter+).
            - `"parallel"`: beside the FFN sub-block, reading `x1` before the FFN's LayerNorm: the block output is
              `x1 + FFN(LN(x1)) + s * A(x1)` (AdaptFormer, He et al. 2022; AdapterHub's `ParBnConfig`).
            - `"parallel_ln"`: beside the FFN, reading the FFN's own input `LN(x1)` and adding to its output
              (hf-vit-adapter 0.1.0's `parallel`).
            With explicit `target_modules` that are not the blocks of a known model, the adapter reads and adds to
            the named module's output, or (`parallel`, `parallel_ln`) reads its input and adds to its output.
        non_linearity (`str`):
            Activation between the projections, any key of `transformers.activations.ACT2FN`. Defaults to `"gelu"`.
        scaling (`float` or `str`):
            Factor `s` on the adapter output: a finite number (fixed; defaults to 1.0, AdaptFormer used 0.1 with
            `"parallel"`), `"learned"` (one trainable scalar per adapter site, starting at 1.0) or `"channel"` (one
            trainable value per channel, starting at 1.0, as in Adapter+). Learned scales are saved with the adapter;
            their parameter is named `scale` (`SCALE_PARAMETER_NAME`) so a trainer can exclude it from weight decay.
        dropout (`float`):
            Dropout probability applied after the activation. Defaults to 0.0.
        drop_path (`float`):
            Stochastic depth on the adapter branch: in training each sample's adapter output is dropped with this
            probability and the kept ones are divided by `1 - drop_path`; exactly the identity in eval. Defaults to
            0.0 (Adapter+ uses 0.1).
        init_weights (`bool` or `str`):
            `True`: the down-projection gets PyTorch's default `nn.Linear` init and the up-projection is zero, so the
            adapted model equals the base model before training. `"houlsby"`: both projections drawn from a normal
            distribution with std 0.01 truncated at two std, biases zero (near-identity, the paper's scheme).
            `"bert"`: normal with std 0.02, biases zero. `False`: PyTorch's default init for both (for tests only).
        target_modules (`Optional[Union[list[str], str]]`):
            Modules to adapt. `None` resolves the model's transformer blocks from its type. A list matches module
            names exactly or by suffix, a string is a regex matched against the full module name. A block of a known
            model gets the sites of `placement`; any other module (an `nn.Linear` or a module that holds them) gets
            one adapter on its output.
        layers_to_transform (`Optional[Union[list[int], int]]`):
            Only adapt the blocks with these indices. `None` adapts every block. On the models resolved without
            `target_modules`, blocks are counted as `adapter_sites` counts them: in module order from 0, Swin's
            across its stages (its block `M` of stage `N` comes after every block of the earlier stages).
        layers_pattern (`Optional[Union[list[str], str]]`):
            Name of the `nn.ModuleList` that holds the blocks, used with `layers_to_transform` on unknown models; when
            given, indices count within that list, as in PEFT (on Swin, `"layers"` are its stages).
        modules_to_save (`Optional[list[str]]`):
            Modules besides the adapters that are trained and saved. `None` means the classification head when the
            model has one, so a trained head travels with the adapter.
        id2label (`Optional[dict[int, str]]`):
            Class names of the trained head, for labels `0..N-1`. Filled from the model config when the adapter is
            created, and used to rebuild the head with the right number of classes when the adapter is loaded.
        format_version (`int`):
            Layout of the saved adapter (`FORMAT_VERSION`); a file without it was saved by hf-vit-adapter 0.1.0 and
            is translated on load.
    """

    bottleneck_size: int = field(default=64, metadata={"help": "Width of the bottleneck (the seed's adapter_length)."})
    placement: str = field(
        default="houlsby",
        metadata={"help": f"Where the adapters go in each block, one of {PLACEMENTS}."},
    )
    non_linearity: str = field(
        default="gelu", metadata={"help": "Activation between the projections, a key of transformers' ACT2FN."}
    )
    scaling: float | str = field(
        default=1.0,
        metadata={"help": "Factor on the adapter output: a number, 'learned' (a scalar) or 'channel' (per channel)."},
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout probability after the activation."})
    drop_path: float = field(
        default=0.0, metadata={"help": "Per-sample stochastic depth on the adapter branch (training only)."}
    )
    init_weights: bool | str = field(
        default=True,
        metadata={"help": f"Initialisation scheme, one of {INIT_SCHEMES}. True makes the adapter start as identity."},
    )
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Module names or a regex of the modules to adapt. None resolves the blocks from the model type."
        },
    )
    layers_to_transform: list[int] | int | None = field(
        default=None,
        metadata={"help": "Indices of the blocks to adapt, counted across the model (Swin: across its stages)."},
    )
    layers_pattern: list[str] | str | None = field(
        default=None, metadata={"help": "Name of the block ModuleList, used with layers_to_transform."}
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Extra modules to train and save. None means the classification head when there is one."},
    )
    id2label: dict[int, str] | None = field(
        default=None, metadata={"help": "Class names of the trained head; filled in from the model config."}
    )
    format_version: int | None = field(
        default=None, metadata={"help": "Layout of the saved adapter; absent in files of hf-vit-adapter 0.1.0."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = BOTTLENECK_PEFT_TYPE
        self._read_format_0_1_0()
        _check_choice("placement", self.placement, PLACEMENTS)
        _check_choice("init_weights", self.init_weights, INIT_SCHEMES)
        _check_integer("bottleneck_size", self.bottleneck_size, minimum=1)
        if not isinstance(self.non_linearity, str) or self.non_linearity not in ACT2FN:
            raise ValueError(
                f"`non_linearity` must be a key of transformers.activations.ACT2FN, got {self.non_linearity!r}. "
                f"Allowed values: {sorted(ACT2FN)}."
            )
        self.scaling = _checked_scaling(self.scaling)
        self.dropout = _checked_probability("dropout", self.dropout)
        self.drop_path = _checked_probability("drop_path", self.drop_path)
        self.target_modules = _checked_target_modules(self.target_modules)
        self.layers_to_transform = _checked_layers(self.layers_to_transform)
        _check_names("layers_pattern", self.layers_pattern, allow_string=True)
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("`layers_pattern` only makes sense together with `layers_to_transform`.")
        _check_names("modules_to_save", self.modules_to_save, allow_string=False)
        self.id2label = _checked_id2label(self.id2label)

    def _read_format_0_1_0(self) -> None:
        """Translate a config saved by 0.1.0 (no `format_version`) to today's meaning, and stamp the format."""
        if self.format_version is None:
            if is_resolved_target_0_1_0(self.target_modules):
                self.target_modules = None  # resolved again, to today's block targets
                self.placement = PLACEMENT_0_1_0.get(self.placement, self.placement)
            self.format_version = FORMAT_VERSION
        elif isinstance(self.format_version, bool) or not isinstance(self.format_version, int):
            raise ValueError(f"`format_version` must be an integer, got {self.format_version!r}.")
        elif self.format_version > FORMAT_VERSION:
            raise ValueError(
                f"`format_version` {self.format_version} is newer than this hf-vit-adapter understands "
                f"({FORMAT_VERSION}); upgrade hf-vit-adapter to load this adapter."
            )

    @classmethod
    def adapter_plus(cls, bottleneck_size: int = 8, **overrides: Any) -> AdapterConfig:
        """Adapter+ (Steitz & Roth, "Adapters Strike Back", CVPR 2024): one adapter per block on the block output,
        `h + s ⊙ DropPath(up(GELU(down(h))))` with a learned per-channel `s` (init 1), both projections
        trunc-normal(std 0.01, ±0.02) with zero biases, adapter drop-path 0.1, no dropout and no LayerNorm inside,
        as in `visinf/adapter_plus` (`conf/adapter/adapter_plus.yaml`) and AdapterHub's `AdapterPlusConfig`.
        `overrides` change any field (e.g. `target_modules`, `drop_path`)."""
        settings: dict[str, Any] = {
            "placement": "pfeiffer",
            "non_linearity": "gelu",
            "scaling": "channel",
            "init_weights": "houlsby",
            "dropout": 0.0,
            "drop_path": 0.1,
        }
        return cls(bottleneck_size=bottleneck_size, **{**settings, **overrides})


def _check_choice(name: str, value: object, allowed: tuple) -> None:
    # `True in ("houlsby",)` is False but `1 in (True,)` is True, so compare types too.
    if not any(value == choice and type(value) is type(choice) for choice in allowed):
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")


def _check_integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _checked_scaling(value: object) -> float | str:
    if isinstance(value, str) and value in SCALING_MODES:
        return value
    if _is_number(value) and math.isfinite(value):
        return float(value)
    raise ValueError(
        f"`scaling` must be a finite number or one of {SCALING_MODES}, got {value!r}"
        + (" (a string; pass the number itself)." if isinstance(value, str) else ".")
    )


def _checked_probability(name: str, value: object) -> float:
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def _checked_target_modules(value: object) -> set[str] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"`target_modules` {value!r} is not a valid regular expression: {error}.") from None
        return value
    if isinstance(value, (list, tuple, set)) and value and all(isinstance(name, str) and name for name in value):
        return set(value)
    raise ValueError(
        "`target_modules` must be None, a regex string, or a non-empty list of module names, "
        f"e.g. ['fc2'], got {value!r}."
    )


def _checked_layers(value: object) -> list[int] | int | None:
    if value is None:
        return None
    items = [value] if not isinstance(value, (list, tuple)) else list(value)
    if not items or any(isinstance(item, bool) or not isinstance(item, int) or item < 0 for item in items):
        raise ValueError(
            f"`layers_to_transform` must be a block index (an integer >= 0) or a list of them, e.g. [0, 1], "
            f"got {value!r}."
        )
    return value if isinstance(value, int) else items


def _check_names(name: str, value: object, allow_string: bool) -> None:
    if value is None or (allow_string and isinstance(value, str)):
        return
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item for item in value):
        return
    example = "['classifier']" if name == "modules_to_save" else "['layers']"
    raise ValueError(f"`{name}` must be a list of module names, e.g. {example}, got {value!r}.")


def _checked_id2label(value: object) -> dict[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValueError(f"`id2label` must be a non-empty dict from class index to name, got {value!r}.")
    labels: dict[int, str] = {}
    for key, name in value.items():
        index = _label_index(key)
        if index is None:
            raise ValueError(f"`id2label` keys must be class indices (integers), got the key {key!r}.")
        if index in labels:
            raise ValueError(f"`id2label` names class {index} twice ({labels[index]!r} and {name!r}).")
        if not isinstance(name, str):
            raise ValueError(f"`id2label` names must be strings, got {name!r} for class {index}.")
        labels[index] = name
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(
            f"`id2label` must name the classes 0..{len(labels) - 1}, each once; got the indices {sorted(labels)}."
        )
    return dict(sorted(labels.items()))


def _label_index(key: object) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and re.fullmatch(r"-?\d+", key.strip()):
        return int(key)
    return None
