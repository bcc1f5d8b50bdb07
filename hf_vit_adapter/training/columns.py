"""Find the image and label columns of a dataset, and make the labels a `ClassLabel` with class names."""

from __future__ import annotations

from datasets import ClassLabel, DatasetDict, Image, Value

from .errors import InputError

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
