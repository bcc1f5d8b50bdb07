"""`AdapterConfig`: the settings of one bottleneck adapter, saved as `adapter_config.json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig
from transformers.activations import ACT2FN

from .peft_type import BOTTLENECK_PEFT_TYPE

PLACEMENTS = ("houlsby", "ffn", "pfeiffer", "parallel")
INIT_SCHEMES = (True, False, "houlsby", "bert")

Placement = Literal["houlsby", "ffn", "pfeiffer", "parallel"]


@dataclass
class AdapterConfig(PeftConfig):
    """
    Configuration of a bottleneck adapter (Houlsby et al., 2019) for [`AdapterModel`].

    Each adapter is `up(dropout(act(down(h))))`, with `down = nn.Linear(d, bottleneck_size)` and
    `up = nn.Linear(bottleneck_size, d)`, added to the adapted module's output with a factor `scaling`.

    Args:
        bottleneck_size (`int`):
            Width of the bottleneck (`adapter_length` in the ModelScope adapter). Defaults to 64.
        placement (`str`):
            Where the adapters go in each transformer block:
            - `"houlsby"`: after the attention output projection and after the FFN output projection,
              `h <- h + s * up(act(down(h)))` (AdapterHub's `DoubleSeqBnConfig`).
            - `"ffn"`: after the FFN output projection only (the ModelScope adapter).
            - `"pfeiffer"`: on the block output after the FFN residual add (AdapterHub's `SeqBnConfig`).
            - `"parallel"`: a branch beside the FFN that reads the FFN input `x` and adds
              `s * up(act(down(x)))` to the FFN output (AdaptFormer, He et al. 2022).
        non_linearity (`str`):
            Activation between the projections, any key of `transformers.activations.ACT2FN`. Defaults to `"gelu"`.
        scaling (`float`):
            Factor `s` on the adapter output. Defaults to 1.0 (AdaptFormer used 0.1 with `"parallel"`).
        dropout (`float`):
            Dropout probability applied after the activation. Defaults to 0.0.
        init_weights (`bool` or `str`):
            `True`: the down-projection gets PyTorch's default `nn.Linear` init and the up-projection is zero, so the
            adapted model equals the base model before training. `"houlsby"`: both projections drawn from a normal
            distribution with std 0.01 truncated at two std, biases zero (near-identity, the paper's scheme).
            `"bert"`: normal with std 0.02, biases zero. `False`: PyTorch's default init for both (for tests only).
        target_modules (`Optional[Union[list[str], str]]`):
            Modules to adapt. `None` resolves them from the model type and `placement`. A list matches module names
            exactly or by suffix, a string is a regex matched against the full module name.
        layers_to_transform (`Optional[Union[list[int], int]]`):
            Only adapt the blocks with these indices. `None` adapts every block.
        layers_pattern (`Optional[Union[list[str], str]]`):
            Name of the `nn.ModuleList` that holds the blocks, used with `layers_to_transform` on unknown models.
        modules_to_save (`Optional[list[str]]`):
            Modules besides the adapters that are trained and saved. `None` means the classification head when the
            model has one, so a trained head travels with the adapter.
        id2label (`Optional[dict[int, str]]`):
            Class names of the trained head. Filled from the model config when the adapter is created, and used to
            rebuild the head with the right number of classes when the adapter is loaded onto a base model.
    """

    bottleneck_size: int = field(default=64, metadata={"help": "Width of the bottleneck (the seed's adapter_length)."})
    placement: str = field(
        default="houlsby",
        metadata={"help": f"Where the adapters go in each block, one of {PLACEMENTS}."},
    )
    non_linearity: str = field(
        default="gelu", metadata={"help": "Activation between the projections, a key of transformers' ACT2FN."}
    )
    scaling: float = field(default=1.0, metadata={"help": "Factor on the adapter output."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout probability after the activation."})
    init_weights: bool | str = field(
        default=True,
        metadata={"help": f"Initialisation scheme, one of {INIT_SCHEMES}. True makes the adapter start as identity."},
    )
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Module names or a regex of the modules to adapt. None resolves them from the model type "
            "and the placement."
        },
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Indices of the blocks to adapt. None adapts every block."}
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

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = BOTTLENECK_PEFT_TYPE
        _check_choice("placement", self.placement, PLACEMENTS)
        _check_choice("init_weights", self.init_weights, INIT_SCHEMES)
        if (
            isinstance(self.bottleneck_size, bool)
            or not isinstance(self.bottleneck_size, int)
            or self.bottleneck_size < 1
        ):
            raise ValueError(f"`bottleneck_size` must be an integer >= 1, got {self.bottleneck_size!r}.")
        if self.non_linearity not in ACT2FN:
            raise ValueError(
                f"`non_linearity` must be a key of transformers.activations.ACT2FN, got {self.non_linearity!r}. "
                f"Allowed values: {sorted(ACT2FN)}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout!r}.")
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("`layers_pattern` only makes sense together with `layers_to_transform`.")
        if self.id2label is not None:
            self.id2label = {int(key): str(value) for key, value in self.id2label.items()}


def _check_choice(name: str, value: object, allowed: tuple) -> None:
    # `True in ("houlsby",)` is False but `1 in (True,)` is True, so compare types too.
    if not any(value == choice and type(value) is type(choice) for choice in allowed):
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
