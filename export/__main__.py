"""Export a zoo model to ONNX, check it, and check its parity with torch under onnxruntime.

    python -m zoo.export resnet18 --out resnet18.onnx --input-size 3 32 32 --num-classes 10 --model-arg stem=cifar
    python -m zoo.export googlenet --weights ./checkpoints/googlenet --out googlenet.onnx --batch 8

Exits with 2 and a message when the export, the checker or the parity check fails.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from zoo.core.console import add_quiet, key_value, run_command
from zoo.core.errors import ArgumentError
from zoo.core.files import atomic_path, check_writable
from zoo.core.progress import progress_bar
from zoo.models.registry import check_input_size

from .onnx import PARITY_BATCHES, check_opset, check_parity, check_tolerance, export_onnx, load_model


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"--batch takes 'dynamic' or a positive integer, got {value!r}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--num-classes`` and ``--model-arg``, shared with ``zoo bench``."""
    parser.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's, or the input's)")
    parser.add_argument(
        "--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE",
        help="a zoo.create_model kwarg, value a Python literal (or JSON), e.g. stem=cifar (ResNet, GoogLeNet) or head=cifar (VGG); repeatable",
    )


DESCRIPTION = """Export a zoo model to ONNX, check the file with onnx.checker and its parity with torch under
onnxruntime. The file carries the model's data contract, tag and weights' sha256 in its metadata, so zoo predict
reads it back. A file that fails a check never reaches --out."""
"""What ``--help`` says above the options: plain text (zoo's help layout refills its lines)."""

EXAMPLES = """
  zoo export resnet18 --out resnet18.onnx --input-size 3 32 32 --num-classes 10 --model-arg stem=cifar
  zoo export googlenet_res5x5.cifar10_paper --out googlenet.onnx --batch 8
  zoo export googlenet_res5x5 --weights runs/mine/model --out mine.onnx"""
"""What ``--help`` shows below the options, before zoo's exit codes."""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``python -m zoo.export`` arguments, added to ``parser`` when given (to mount it as ``zoo export``)."""
    parser = parser or argparse.ArgumentParser(prog="python -m zoo.export", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = DESCRIPTION
    parser.epilog = "\n\n".join(filter(None, (f"examples:{EXAMPLES}", parser.epilog)))
    parser.add_argument("model", help="registry name (zoo list), or arch.tag to export its published weights")
    parser.add_argument("--weights", help="a .safetensors file, a checkpoint folder, or hf-hub:owner/name[@revision] (zoo.load_weights)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    parser.add_argument("--batch", type=_batch, default=None, metavar="dynamic|N", help="a dynamic batch axis (default) or a fixed batch N")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="default: the model's own, e.g. 3 224 224")
    add_model_arguments(parser)
    add_quiet(parser)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest parity difference, relative to the largest |logit|")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    check_output(args.out)
    check_opset(args.opset)
    check_tolerance(args.tolerance)
    if args.input_size:
        check_input_size(args.input_size, "--input-size")
    model = load_model(args.model, weights=args.weights, **model_kwargs(args))
    input_size = tuple(args.input_size or model.default_input_size)
    dynamic = args.batch is None
    batches = PARITY_BATCHES if dynamic else (args.batch,)
    bar = progress_bar(not args.quiet, 1 + len(batches), f"export {args.model}", unit="step")
    with atomic_path(args.out) as tmp:  # a file that fails the checker or the parity check never reaches --out
        if bar is not None:
            bar.set_postfix_str("torch.onnx.export, onnx.checker")
        export_onnx(model, tmp, input_size=input_size, opset=args.opset, dynamic_batch=dynamic,
                    batch_size=2 if dynamic else args.batch)
        diffs = check_parity(model, tmp, input_size=input_size, batch_sizes=batches, tolerance=args.tolerance,
                             on_batch=None if bar is None else functools.partial(_next_step, bar))
    if bar is not None:
        bar.update()  # the last parity check
        bar.close()
    path = Path(args.out)
    size_mb = path.stat().st_size / 2**20
    parity = ", ".join(f"batch {b}: {d:.2e}" for b, d in diffs.items())
    print(f"wrote {path} ({size_mb:.1f} MB, input {'x'.join(map(str, input_size))}, batch {args.batch or 'dynamic'})")
    print(f"onnx.checker (full) passed; max |onnxruntime - torch|: {parity}")
    return 0


def check_output(out: Path) -> None:
    """Refuse, before the export, an --out zoo could not write or zoo predict would not read back as ONNX."""
    check_writable(out)
    if out.suffix.lower() != ".onnx":
        raise ArgumentError(f"--out {out} does not end in .onnx, which zoo predict recognises an ONNX file by; pass "
                            f"{out.with_name(out.name + '.onnx')}")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """--model-arg with --num-classes and --input-size's channels; a --model-arg that says otherwise is refused."""
    kwargs = dict(args.model_arg)
    given = (("num_classes", args.num_classes, "--num-classes"),
             ("in_chans", args.input_size[0] if args.input_size else None, "--input-size"))
    for key, value, option in given:
        if value is not None and kwargs.get(key, value) != value:
            raise ArgumentError(f"--model-arg {key}={kwargs[key]!r} contradicts {option} ({key}={value}); pass one of them")
        if value is not None:
            kwargs[key] = value
    return kwargs


def _next_step(bar, batch: int) -> None:
    bar.update()
    bar.set_postfix_str(f"parity, batch {batch}")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
