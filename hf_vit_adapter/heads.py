"""Labels travel with the adapter: find the classification head, and rebuild it for the saved classes on load."""

from __future__ import annotations

from peft.utils import ModulesToSaveWrapper
from torch import nn

# Top-level names transformers gives the heads of its image classifiers (DeiT's distilled model has two).
HEAD_NAMES = ("classifier", "cls_classifier", "distillation_classifier")


def classification_head_names(model: nn.Module) -> list[str]:
    """Names of the `nn.Linear` classification heads directly under `model`, e.g. `["classifier"]`."""
    return [
        name
        for name, module in model.named_children()
        if name in HEAD_NAMES and isinstance(module, (nn.Linear, ModulesToSaveWrapper))
    ]


def model_id2label(model: nn.Module) -> dict[int, str] | None:
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None)
    return {int(key): value for key, value in id2label.items()} if id2label else None


def restore_heads(model: nn.Module, head_names: list[str], id2label: dict[int, str], adapter_name: str) -> None:
    """Give each head `len(id2label)` outputs and put the class names into `model.config`.

    A base checkpoint (e.g. `google/vit-base-patch16-224-in21k`) has no head or one of another size; the saved head
    weights then only fit after this. The new head's weights are overwritten by the adapter's saved head.
    """
    num_labels = len(id2label)
    for name in head_names:
        head = getattr(model, name)
        if isinstance(head, ModulesToSaveWrapper):
            current = head.original_module.out_features
            if current != num_labels:
                raise ValueError(
                    f"Adapter {adapter_name!r} was trained with {num_labels} classes, but the head `{name}` of this "
                    f"model, already shared with other adapters, has {current}. Load this adapter onto its own base "
                    "model."
                )
            continue
        if head.out_features != num_labels:
            new_head = nn.Linear(
                head.in_features,
                num_labels,
                bias=head.bias is not None,
                device=head.weight.device,
                dtype=head.weight.dtype,
            )
            setattr(model, name, new_head)
    config = getattr(model, "config", None)
    if config is not None:
        config.id2label = dict(id2label)
        config.label2id = {label: index for index, label in id2label.items()}
