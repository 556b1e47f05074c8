"""The ``zoo`` command: list, info, train, eval, export, bench, push, card, reproduce."""
from __future__ import annotations

import argparse
import json
import sys

from zoo.errors import ZooError


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    import zoo

    for name in zoo.list_models(args.pattern or "*", pretrained=args.pretrained):
        print(name)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import zoo

    names = zoo.list_models(args.pattern or "*")
    if not names:
        raise zoo.UnknownModelError(f"no model matches {args.pattern}; zoo list shows them all")
    kwargs = {"num_classes": args.num_classes, "in_chans": args.input_size[0] if args.input_size else None}
    rows = [zoo.model_info(n, input_size=args.input_size, **kwargs) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        r["input"] = "x".join(map(str, r["input_size"]))
        r["params (M)"] = f"{r['params'] / 1e6:.2f}"
        r["MACs (G)"] = f"{r['macs'] / 1e9:.3f}"
    print(format_table(rows, ["name", "input", "params (M)", "MACs (G)"]))
    print("\nMACs = FLOPs / 2, counting convolutions and matrix products (torch.utils.flop_counter).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered model names (or pretrained arch.tag names)")
    p.add_argument("pattern", nargs="*", help="shell-style wildcards, e.g. 'googlenet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with published weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="params and MACs of models at their default (or a given) input")
    p.add_argument("pattern", nargs="*", help="shell-style wildcards, e.g. 'googlenet*'")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="e.g. 3 32 32 for CIFAR-10")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ZooError as e:
        print(f"zoo {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
