"""transformers' load report of a base model loaded for an adapter, in one line.

Loaded for an adapter, a base model lacks weights that nobody should worry about: the classification head that the
adapter brings (or that training will make), and weights of the checkpoint that an image classifier does not use
(CLIP's text tower and projections, the pooler of checkpoints saved without a head). transformers reports them as
MISSING / UNEXPECTED with advice to train. Here the expected parts become one line; anything else the load reports
stays a warning that names the weights. Used by the training CLI for its own loads and by `loading.py` for
`from_pretrained(adapter_dir)` and `pipeline(model=adapter_dir)`.
"""

from __future__ import annotations

import logging
from typing import Any

from .heads import HEAD_NAMES

logger = logging.getLogger(__name__)

# Weights of a checkpoint that an image classifier built from it does not use: CLIP's text tower and projections, and
# the pooler of checkpoints saved without a head (e.g. google/vit-base-patch16-224-in21k).
UNUSED_PARTS = ("text_model.", "text_projection.", "visual_projection.", "logit_scale", "pooler.")


def report_base_load(name: str, info: dict[str, Any], num_labels: int | None, head_from_adapter: bool) -> None:
    """One line for what was expected (a new head, unused weights), a warning naming anything else.

    `info` holds transformers' `missing_keys`, `unexpected_keys` and `mismatched_keys`. `num_labels` is the size of
    the head the adapter trains or brings; None when it brings none, so a missing head is a surprise too.
    `head_from_adapter`: the head's weights are loaded from the adapter (the line is then info, not a warning).
    """
    missing = set(info.get("missing_keys") or ()) | {key for key, *_ in info.get("mismatched_keys") or ()}
    unexpected = set(info.get("unexpected_keys") or ())
    new_head = {key for key in missing if key.split(".")[0] in HEAD_NAMES} if num_labels is not None else set()
    unused = {key for key in unexpected if any(f".{part}" in f".{key}" for part in UNUSED_PARTS)}
    surprises = sorted(missing - new_head) + sorted(unexpected - unused)
    if surprises:
        logger.warning(
            f"Loading {name}: {len(surprises)} weights were not where the model expects them (e.g. "
            f"{', '.join(surprises[:3])}); is this the checkpoint you meant?"
        )
    notes = []
    if new_head:
        role = "its weights come from the adapter" if head_from_adapter else "it is trained with the adapter"
        notes.append(f"a new {num_labels}-way classification head ({role})")
    if unused:
        notes.append(f"{len(unused)} checkpoint weights the classifier does not use (text tower, pooler)")
    if notes:
        log = logger.info if head_from_adapter else logger.warning
        log(f"Loaded {name} with {' and '.join(notes)}, as expected.")
