"""zoo's command line and nothing else: its subcommands' one-line help and the dataset argument types.

The shared plumbing (argument types, tables, the exit-code rule) is zoo.core.console, which export's modules use too;
only the CLI (zoo.cli, zoo.cli.commands) imports this module.
"""
from __future__ import annotations

import argparse

from zoo.data.datasets import FOLDER_PREFIX, list_datasets

__all__ = ["COMMANDS", "dataset_name", "registered_dataset"]


COMMANDS = {
    "list": "registered model names (or pretrained arch.tag names)",
    "info": "params and MACs of models at their default (or a given) input",
    "predict": "classify images: label names with probabilities",
    "train": "train a model with one of the paper's recipes or ours, or fine-tune one (--init) on a dataset or image folder",
    "eval": "top-1/top-5 error, per-class accuracy and confusion matrix of a checkpoint",
    "reproduce": "the paper's experiments: runs, curves and a report beside the paper's numbers",
    "push": "upload a save_pretrained folder to a Hugging Face model repo",
    "card": "(re)write RUN_DIR/model/README.md and its training curve",
    "release": "bundle a finished run as a pretrained tag: fp16 weights, card, pinned sha256",
}
"""zoo's own subcommands and their one-line help: ``zoo --help`` shows them without loading any (zoo.cli)."""


def dataset_name(text: str) -> str:
    """argparse type: a registered dataset's name or ``folder:PATH`` (the folder itself is checked when read)."""
    if text.startswith(FOLDER_PREFIX):
        if not text[len(FOLDER_PREFIX):]:
            raise argparse.ArgumentTypeError(f"{FOLDER_PREFIX} needs a path: {FOLDER_PREFIX}PATH")
        return text
    if text not in list_datasets():
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(list_datasets())} or {FOLDER_PREFIX}PATH")
    return text


def registered_dataset(text: str) -> str:
    """argparse type: a registered dataset's name (not an image folder)."""
    if text not in list_datasets():
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(list_datasets())}")
    return text


