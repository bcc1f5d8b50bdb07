"""Find the image and label columns of a dataset, make the labels a `ClassLabel` with class names, and check that
the classes can be learned: unlabelled rows go, fewer than two classes is refused, classes with no training images
are named."""

from __future__ import annotations

import logging

from datasets import ClassLabel, Dataset, DatasetDict, Image, Value

from .errors import InputError

logger = logging.getLogger(__name__)

IMAGE_COLUMN_NAMES = ("image", "img", "images", "picture", "photo", "pixel_values")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "fine_labels", "class", "class_label", "target", "category")


def find_columns(dataset: DatasetDict, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    """Names of the image and label columns: the given ones after checking they exist, else found by name or type."""
    features = next(iter(dataset.values())).features
    columns = list(features)
    images = [name for name in columns if _is_image(features[name])]
    labels = [name for name in columns if isinstance(features[name], ClassLabel)]
    image_column = _resolve(image_column, "image", columns, IMAGE_COLUMN_NAMES, images)
    label_column = _resolve(label_column, "label", columns, LABEL_COLUMN_NAMES, labels)
    for split, data in dataset.items():
        missing = [name for name in (image_column, label_column) if name not in data.column_names]
        if missing:
            raise InputError(f"Split {split!r} has no column {missing[0]!r}; its columns are {data.column_names}.")
    if not _is_image(features[image_column]):
        raise InputError(
            f"Column {image_column!r} holds {features[image_column]}, not images. "
            f"Pick the image column with --image_column_name; the columns are {columns}."
        )
    return image_column, label_column


def _is_image(feature: object) -> bool:
    return isinstance(feature, Image)


def _resolve(given: str | None, kind: str, columns: list[str], names: tuple[str, ...], typed: list[str]) -> str:
    if given is not None:
        if given not in columns:
            raise InputError(f"--{kind}_column_name {given!r} is not a column; the dataset's columns are {columns}.")
        return given
    for name in names:
        if name in columns:
            return name
    if len(typed) == 1:
        return typed[0]
    raise InputError(
        f"Cannot tell which column holds the {kind}s; pass --{kind}_column_name. The dataset's columns are {columns}."
    )


def drop_unlabelled(dataset: DatasetDict, label_column: str) -> DatasetDict:
    """Drop rows whose label is -1 (the Hub's "no label", e.g. a test split) or missing, with a warning per split."""
    kept = {}
    for name, split in dataset.items():
        if not {-1, None} & set(split.unique(label_column)):
            kept[name] = split
            continue
        kept[name] = split.filter(
            lambda labels: [label is not None and label != -1 for label in labels],
            input_columns=label_column,
            batched=True,
            desc=f"Dropping unlabelled rows of {name}",
        )
        logger.warning(
            f"Dropped {len(split) - len(kept[name])} of the {len(split)} rows of split {name!r}: their "
            f"{label_column!r} is -1 or missing (unlabelled)."
        )
    return DatasetDict(kept)


def check_training_classes(train: Dataset, label_column: str, names: list[str], split: str) -> None:
    """Refuse fewer than two classes (one class would make transformers train a regression head); warn about
    classes in the head that have no training images, so cannot be learned."""
    present = sorted(set(train.unique(label_column)))
    if len(names) < 2 or len(present) < 2:
        shown = ", ".join(repr(names[index]) for index in present) or "none"
        raise InputError(
            f"Label column {label_column!r} of split {split!r} holds {len(present)} class(es) ({shown}); a classifier "
            "needs at least two. Pick another --label_column_name or add images of other classes."
        )
    unseen = [names[index] for index in range(len(names)) if index not in set(present)]
    if unseen:
        shown = ", ".join(unseen[:10]) + (f" and {len(unseen) - 10} more" if len(unseen) > 10 else "")
        logger.warning(
            f"{len(unseen)} of the {len(names)} classes have no training images in split {split!r}, so the head "
            f"cannot learn them: {shown}."
        )


def ensure_class_labels(dataset: DatasetDict, label_column: str) -> tuple[DatasetDict, list[str]]:
    """Return the dataset with `label_column` as a `ClassLabel`, and its class names.

    A `ClassLabel` column is used as it is. String labels become classes in sorted order, and integer labels
    `0..n-1` become classes named by their number. Anything else (floats, lists, ...) is not categorical.
    """
    feature = next(iter(dataset.values())).features[label_column]
    if isinstance(feature, ClassLabel):
        return dataset, list(feature.names)
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        names = sorted({str(value) for split in dataset.values() for value in split.unique(label_column)})
        return dataset.cast_column(label_column, ClassLabel(names=names)), names
    if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        values = {int(value) for split in dataset.values() for value in split.unique(label_column)}
        if values and min(values) >= 0:
            names = [str(index) for index in range(max(values) + 1)]
            return dataset.cast_column(label_column, ClassLabel(names=names)), names
    raise InputError(
        f"Label column {label_column!r} holds {feature}, which is not categorical. Use a ClassLabel, string or "
        "non-negative integer column (pick another with --label_column_name)."
    )


def relabel_to(
    split: Dataset, label_column: str, names: list[str], id2label: dict[int, str]
) -> tuple[Dataset, list[str]]:
    """`split` with its labels renumbered as a trained adapter's classes (`id2label`), matched by name.

    An evaluation set's classes are numbered by what the dataset holds (e.g. the classes of one image folder); the
    trained head's outputs by the classes it was trained on. A class the adapter never saw cannot be evaluated.
    """
    if not id2label:
        logger.warning("The adapter records no class names; its outputs are taken to be the dataset's classes.")
        return split, names
    adapter_names = [id2label[index] for index in sorted(id2label)]
    position = {name: index for index, name in enumerate(adapter_names)}
    present = [names[index] for index in sorted(set(split.unique(label_column)))]
    unknown = [name for name in present if name not in position]
    if unknown:
        known = ", ".join(adapter_names[:10]) + (", ..." if len(adapter_names) > 10 else "")
        raise InputError(
            f"The evaluation split has classes the adapter was not trained on: {', '.join(unknown[:10])} "
            f"(it knows {len(adapter_names)}: {known})."
        )
    features = split.features.copy()
    features[label_column] = ClassLabel(names=adapter_names)
    relabelled = split.map(
        lambda labels: {label_column: [position[names[label]] for label in labels]},
        input_columns=label_column,
        batched=True,
        features=features,
        desc="Numbering the labels as the adapter's classes",
    )
    return relabelled, adapter_names
