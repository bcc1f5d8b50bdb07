"""Labels travel with the adapter: find the classification head, and size it for each adapter's saved classes.

A base checkpoint (e.g. `google/vit-base-patch16-224-in21k`) has no head or one of another size, so the saved head
weights only fit after the head is rebuilt with `len(id2label)` outputs. Once PEFT wraps the head, every adapter has
its own copy, which may have its own number of classes; the model config then carries the active adapter's names.
"""

from __future__ import annotations

from peft.utils import ModulesToSaveWrapper
from torch import nn

# Top-level names transformers gives the heads of its image classifiers (DeiT's distilled model has two).
HEAD_NAMES = ("classifier", "cls_classifier", "distillation_classifier")


class AdapterHead(ModulesToSaveWrapper):
    """PEFT's wrapper of a saved classification head, whose saved keys the adapter's own load hook translates.

    PEFT translates `modules_to_save` keys before the per-method hook runs and fails with a bare `KeyError` when the
    file lacks the head; handing the head's keys to `loading.remap_state_dict_for_load` lets a missing head be
    reported like any other weight that does not fit. (PEFT's `get_base_model_state_dict` then counts the head
    copies as base weights.)
    """

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        return {}

    def saved_keys(self, adapter_name: str) -> dict[str, str]:
        """Keys of this head in a saved file (relative to the wrapper) -> keys in the model."""
        if adapter_name not in self._adapters:
            return {}
        head = self.modules_to_save[adapter_name]
        return {key: f"modules_to_save.{adapter_name}.{key}" for key in head.state_dict()}


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


def set_labels(model: nn.Module, id2label: dict[int, str]) -> None:
    """Put the class names into the model config, where `pipeline` and users read them."""
    config = getattr(model, "config", None)
    if config is not None:
        config.id2label = dict(id2label)
        config.label2id = {label: index for index, label in id2label.items()}


def _resized(head: nn.Linear, num_labels: int) -> nn.Linear:
    """A new head like `head` with `num_labels` outputs; its weights come from the adapter's saved head."""
    new_head = nn.Linear(
        head.in_features, num_labels, bias=head.bias is not None, device=head.weight.device, dtype=head.weight.dtype
    )
    new_head.requires_grad_(head.weight.requires_grad)
    return new_head


def resize_unshared_heads(model: nn.Module, head_names: list[str], num_labels: int) -> None:
    """Rebuild heads that no adapter wraps yet with `num_labels` outputs (the first adapter on a base model)."""
    for name in head_names:
        head = getattr(model, name)
        if isinstance(head, nn.Linear) and head.out_features != num_labels:
            setattr(model, name, _resized(head, num_labels))


def resize_adapter_head_copies(model: nn.Module, head_names: list[str], adapter_name: str, num_labels: int) -> None:
    """Give `adapter_name`'s copy of each wrapped head `num_labels` outputs.

    PEFT makes that copy from the head as the first adapter left it, so an adapter with another number of classes
    needs its own size.
    """
    for name in head_names:
        wrapper = getattr(model, name, None)
        if not isinstance(wrapper, ModulesToSaveWrapper) or adapter_name not in wrapper.modules_to_save:
            continue
        copy = wrapper.modules_to_save[adapter_name]
        if isinstance(copy, nn.Linear) and copy.out_features != num_labels:
            wrapper.modules_to_save[adapter_name] = _resized(copy, num_labels)


def head_widths(model: nn.Module, adapter_names: set[str]) -> dict[str, int]:
    """How many classes each of `adapter_names` predicts (`"__base__"`: the base head), for mixed batches."""
    for wrapper in model.modules():
        if isinstance(wrapper, ModulesToSaveWrapper) and isinstance(wrapper.original_module, nn.Linear):
            heads = wrapper.modules_to_save
            # An adapter without its own copy of the head uses the base head.
            return {
                name: (heads[name] if name in heads else wrapper.original_module).out_features
                for name in adapter_names
            }
    return {}
