"""`hf-vit-adapter-convert SOURCE OUTPUT_DIR [--base_model PATH_OR_ID]`: an AdapterHub adapter in, ours out.

User errors end with one line, `hf-vit-adapter-convert: error: ...`, and exit code 2; warnings are one line each.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import transformers

from .adapterhub import convert_adapterhub
from .errors import ConversionError, ConversionWarning

PROG = "hf-vit-adapter-convert"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints the usage too; we keep to one line
        _fail(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Convert an AdapterHub (`adapters`) bottleneck adapter of a ViT, BEiT or CLIP model into an "
        "hf_vit_adapter adapter folder that PEFT, AutoModelForImageClassification and pipeline() load.",
    )
    parser.add_argument("source", help="AdapterHub adapter folder (saved with save_adapter) or a Hub repo id.")
    parser.add_argument("output_dir", help="Folder to create; it must not exist or be empty.")
    parser.add_argument(
        "--base_model",
        default=None,
        help="Base model (Hub id or folder) to put the adapter on; defaults to the model_name AdapterHub saved.",
    )
    return parser


def main(args: list[str] | None = None) -> None:
    """Console entry point. Returns nothing: the console script exits with what `main` returns."""
    options = build_parser().parse_args(args)
    with _quiet_libraries():
        try:
            output_dir = convert_adapterhub(options.source, options.output_dir, base_model=options.base_model)
        except ConversionError as error:
            _fail(str(error))
    print(f"Wrote {output_dir}: load it with AutoModelForImageClassification.from_pretrained or pipeline().")


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Only our warnings, one line each: transformers' load reports ("newly initialized": the head is replaced on
    purpose), progress bars and other libraries' deprecation notices are noise here."""
    verbosity, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", ConversionWarning)
            warnings.showwarning = _show_warning
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
