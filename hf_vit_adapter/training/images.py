"""Images as the model wants them: RGB whatever their mode, and unreadable files caught before training starts."""

from __future__ import annotations

import io
import logging

from datasets import Dataset, Image
from PIL import Image as PILImage

logger = logging.getLogger(__name__)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert an image of any mode to RGB.

    Transparent pixels are laid on white (a plain `convert("RGB")` would show whatever colour hides under them), and
    16-bit, 32-bit integer and float greyscale images are scaled into 8 bits instead of being clipped.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        low, high = (0, 65535) if image.mode in _SIXTEEN_BIT_MODES else image.getextrema()
        scale = 255.0 / (high - low) if high > low else 0.0
        image = image.convert("F").point(lambda value: (value - low) * scale).convert("L")
    return image.convert("RGB")


def _describe(raw: dict | None, split: str, index: int) -> str:
    path = (raw or {}).get("path")
    return f"{path} ({split}[{index}])" if path else f"{split}[{index}]"


def _readable(batch: dict[str, list], image_column: str) -> dict[str, list[bool]]:
    flags = []
    for raw in batch[image_column]:
        try:
            source = io.BytesIO(raw["bytes"]) if raw and raw.get("bytes") else raw["path"]
            with PILImage.open(source) as image:
                image.load()
            flags.append(True)
        except Exception:  # noqa: BLE001 - any failure to decode makes the image unusable
            flags.append(False)
    return {"readable": flags}


def drop_unreadable_images(
    dataset: Dataset, image_column: str, split: str, num_proc: int | None = None
) -> tuple[Dataset, list[str]]:
    """Decode every image once; drop those that fail, with a warning naming each file.

    Decoding happens lazily during training, so one corrupt file would otherwise kill a run midway.
    Returns the readable rows and the names of the dropped files.
    """
    raw = dataset.cast_column(image_column, Image(decode=False))
    flags = raw.map(
        _readable,
        fn_kwargs={"image_column": image_column},
        batched=True,
        remove_columns=raw.column_names,
        num_proc=num_proc,
        desc=f"Checking that the {split} images decode",
    )["readable"]
    bad = [index for index, ok in enumerate(flags) if not ok]
    if not bad:
        return dataset, []
    names = [_describe(raw[index][image_column], split, index) for index in bad]
    for name in names:
        logger.warning(f"Skipping unreadable image {name}")
    return dataset.select([index for index, ok in enumerate(flags) if ok]), names
