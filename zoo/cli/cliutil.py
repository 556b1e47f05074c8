"""zoo's command line and nothing else: its subcommands' help (one line, examples), the help's plain-text layout and
the dataset argument types.

The shared plumbing (argument types, tables, the exit-code rule) is zoo.core.console, which export's modules use too;
only the CLI (zoo.cli, zoo.cli.commands) imports this module.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import textwrap

from zoo.core.console import EXIT_CODES
from zoo.data.datasets import FOLDER_PREFIX, list_datasets

__all__ = ["COMMANDS", "EXAMPLES", "HELP_WIDTH", "HelpFormatter", "add_command", "dataset_name", "epilog",
           "registered_dataset"]


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

EXAMPLES = {
    "zoo": """
  zoo list 'googlenet*'
  zoo predict photos/ --model googlenet_res5x5.cifar10_paper
  zoo train resnet18 --dataset cifar10 --recipe fast --data-dir DIR
  zoo bench --out bench-results
  zoo train --help                            # each command's options and examples""",
    "list": """
  zoo list 'googlenet*'                       # shell-style wildcards
  zoo list --pretrained                       # the tags with weights: arch.tag""",
    "info": """
  zoo info 'googlenet*'                       # archs at 3x224x224, tags at their own input
  zoo info resnet18 vgg19 --input-size 3 32 32 --num-classes 10
  zoo info '*.cifar10_paper' --json""",
    "predict": """
  zoo predict cat.jpg photos/ --model googlenet_res5x5.cifar10_paper --top-k 3
  zoo predict digit.png --model googlenet_res5x5.mnist_paper
  zoo predict photos/ --model runs/mine/model --json      # a save_pretrained folder
  zoo predict photos/ --model mine.onnx                   # an ONNX file zoo exported""",
    "train": """
  zoo train resnet18 --dataset cifar10 --recipe fast --data-dir DIR --out runs/r18
  zoo train resnet18 --dataset cifar10 --recipe fast --data-dir DIR --out runs/r18 --resume
  zoo train vgg19 --dataset mnist --recipe paper --recipe-arg plateau_patience=10 --data-dir DIR
  zoo train googlenet_res5x5 --init googlenet_res5x5.cifar10_paper --dataset folder:photos
  zoo train resnet18 --synthetic 256 --epochs 1 --out runs/smoke       # no data needed""",
    "eval": """
  zoo eval googlenet_res5x5.cifar10_paper --data-dir DIR     # a tag, on its own test set
  zoo eval googlenet_res5x5.mnist_paper --data-dir DIR --test-subset 1000   # a seeded 1,000 of it
  zoo eval resnet18 --weights runs/r18/model --dataset cifar10 --data-dir DIR --out runs/r18/eval""",
    "reproduce": """
  zoo reproduce fig7 aux --seeds 3 --recipe fast --epochs 10 --plan    # runs, minutes, disk, power
  zoo reproduce fig7 aux --seeds 3 --recipe fast --epochs 10 --data-dir DIR --jobs 4
  zoo reproduce fig5 --quick --out quick           # the machinery on a few synthetic images""",
    "push": """
  zoo push runs/r18/model owner/name --dry-run     # exactly the files that would be uploaded
  zoo push runs/r18/model owner/name --private""",
    "card": """
  zoo card runs/r18
  zoo card runs/r18 --latency latency.json --repo-id owner/name""",
    "release": """
  zoo release runs/r18 cifar10_fast --data-dir DIR     # model_cards/resnet18.cifar10_fast, pinned
  zoo release runs/r18 cifar10_fast --card-only""",
}
"""Each command's examples, as ``--help`` shows them below its options (a test parses every one)."""

HELP_WIDTH = 100
"""``--help`` fits in this many columns (fewer on a narrower terminal)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's layout within :data:`HELP_WIDTH` columns; descriptions and epilogs keep their own lines (examples,
    paragraphs), and a line wider than the terminal is wrapped at its own indent."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=min(shutil.get_terminal_size().columns - 2, HELP_WIDTH))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # hf-hub:owner/name stays whole

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for prose, group in itertools.groupby(text.splitlines(), key=lambda line: line[:1].isalnum()):
            if prose:  # a paragraph: its lines joined and filled to the width
                lines.append(textwrap.fill(" ".join(group), width, initial_indent=indent, subsequent_indent=indent))
                continue
            for line in group:  # an example or a blank line: as it is, wrapped deeper only where it does not fit
                hang = indent + " " * (len(line) - len(line.lstrip()) + 4)
                lines.append(indent + line if len(indent + line) <= width else
                             textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hang,
                                           break_on_hyphens=False))
        return "\n".join(lines) + "\n"


def epilog(examples: str) -> str:
    """The text below a command's options: its examples, then the exit-code rule."""
    return f"examples:{examples}\n\n{EXIT_CODES}"


def add_command(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """A subcommand's parser: its one-line help above its options, its examples and the exit codes below."""
    return sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name], epilog=epilog(EXAMPLES[name]),
                          formatter_class=HelpFormatter)


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
