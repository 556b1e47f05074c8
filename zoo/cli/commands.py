"""zoo's own subcommands: their arguments and what each runs (zoo.cli parses and dispatches).

The heavy end of the command line: it imports the library (torch included), so zoo.cli loads it only
once a subcommand is given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.cli.cliutil import add_command, dataset_name, registered_dataset
from zoo.core.console import EXIT_STOPPED, add_quiet, format_table, key_value, positive
from zoo.core.errors import ArgumentError, UnknownModelError
from zoo.core.files import check_readable
from zoo.data.datasets import DEFAULT_DATASET, FOLDER_PREFIX, list_datasets
from zoo.hub.cards import write_run_card
from zoo.hub.pretrained import push_to_hub
from zoo.inference.runtime import predict
from zoo.models.registry import BUNDLED_DIR, TAGS_FILE, list_models, model_info
from zoo.paper.plan import MACHINES, estimate, machines, power_plan, untestable
from zoo.paper.reproduce import EXPERIMENTS, plan_configs, reproduce, unique_configs
from zoo.train.loop import TrainConfig, evaluate_checkpoint, train
from zoo.train.recipes import RECIPES
from zoo.train.release import release


def cmd_list(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern or "*", pretrained=args.pretrained):
        print(name)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    patterns = args.pattern or "*"
    names = ([] if args.pretrained else list_models(patterns)) + \
        ([] if args.pretrained is False else list_models(patterns, pretrained=True))
    if not names:
        raise UnknownModelError(f"no model matches {args.pattern}; zoo list shows them all")
    kwargs = {"num_classes": args.num_classes, "in_chans": args.input_size[0] if args.input_size else None}
    rows = [model_info(n, input_size=args.input_size, **kwargs) for n in names]
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


def cmd_train(args: argparse.Namespace) -> int:
    recipe = args.recipe or ("finetune" if args.init else "paper")  # TrainConfig's default, for the run's name
    name = Path(args.dataset.removeprefix(FOLDER_PREFIX)).name if args.dataset.startswith(FOLDER_PREFIX) else args.dataset
    cfg = TrainConfig(
        arch=args.model, dataset=args.dataset, recipe=recipe, out=args.out or f"runs/{args.model}-{name}-{recipe}",
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, model_kwargs=dict(args.model_arg),
        recipe_overrides=dict(args.recipe_arg),
        data_dir=args.data_dir, synthetic=args.synthetic, val_split=args.val_split, train_subset=args.train_subset,
        test_subset=args.test_subset, seed=args.seed, device=args.device, compile=args.compile, resume=args.resume,
        progress=not args.quiet, init=args.init, mirror=args.mirror, records_only=args.records_only,
    )
    summary = train(cfg)
    if summary.get("stopped"):
        print(f"zoo train: {summary['message']}", file=sys.stderr)
        return EXIT_STOPPED
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(
        args.model, args.weights, args.dataset, data_dir=args.data_dir, device=args.device, out=args.out, tta_flip=args.tta,
        progress=not args.quiet, test_subset=args.test_subset,
    )
    print(f"{args.model} on {result['dataset']} test ({result['images']} images): top-1 error {result['err']:.2f}%, "
          f"top-5 error {result['top5_err']:.2f}%, loss {result['loss']:.4f}")
    print(format_table([{"class": k, "accuracy %": f"{v:.2f}"} for k, v in result["per_class_acc"].items()], ["class", "accuracy %"]))
    if args.out:
        print(f"wrote {args.out}/eval.json and {args.out}/confusion.png")
    return 0


def seed_list(values: list[int]) -> tuple[int, ...]:
    """``--seeds 3`` means seeds 0, 1, 2; several values are the seeds themselves."""
    if len(values) == 1 and values[0] < 1 or any(v < 0 for v in values):
        raise ArgumentError(f"--seeds takes a count >= 1 or several seeds >= 0, got {' '.join(map(str, values))}")
    return tuple(range(values[0])) if len(values) == 1 else tuple(values)


def _number(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def print_plan(plan: dict, args: argparse.Namespace) -> None:
    """The runs' cost on each machine the plan is for, then each claim's power, then what it cannot test."""
    configs = unique_configs(plan)
    for machine in machines(args.device):
        est = estimate(configs, machine, jobs=args.jobs, throughput=args.throughput)
        unit = "CPU" if machine == "cpu" else "GPU"
        print(f"## {MACHINES[machine]}\n")
        print(format_table([{**r, "img_s": _number(r["img_s"], 0), "minutes": _number(r["minutes"]),
                             "disk_gb": f"{r['disk_gb']:.2f}"} for r in est["runs"]],
                           ["run", "epochs", "images", "img_s", "minutes", "disk_gb", "source"]))
        missing = f"; {est['unmeasured']} runs have no recorded rate here and are not counted" if est["unmeasured"] else ""
        print(f"\n{len(est['runs'])} runs (configurations shared by experiments counted once), {est['images']:,} images "
              f"(evaluation counted at 1/3), {args.jobs} at a time: about {est['minutes']:.1f} {unit} minutes{missing}; "
              f"disk {est['disk_gb']:.1f} GB kept (states and models), {est['peak_disk_gb']:.1f} GB at peak\n")
    seeds = len(seed_list(args.seeds))
    rows = power_plan(plan, seeds)
    print(f"## Power at {seeds} seeds per run (80% power, alpha 0.05 per claim; the seed sd pooled from recorded runs)\n")
    print(format_table([{**r, "effect": _number(r["effect"]), "sd": _number(r["sd"]), "needed": r["needed"] or "-",
                         "power": _number(r["power"]), "mde": _number(r["mde"]), "decides": r["why"] or "yes"}
                        for r in rows], ["experiment", "recipe", "claim", "metric", "effect", "sd", "needed", "power",
                                         "mde", "decides"]))
    for source in sorted({r["source"] for r in rows if r["source"]}):
        print(f"sd from {source}")
    for line in untestable(plan):
        print(f"cannot test: {line}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    options = dict(epochs=args.epochs, recipes=tuple(args.recipe) if args.recipe else None, seeds=seed_list(args.seeds),
                   val_split=args.val_split, model_args=dict(args.model_arg), skip=tuple(args.skip),
                   compress=args.compress, dataset=args.dataset)
    if args.plan:
        print_plan(plan_configs(args.experiment, Path(args.out), **options), args)
        return 0
    report = reproduce(args.experiment, args.out, quick=args.quick, data_dir=args.data_dir, device=args.device,
                       jobs=args.jobs, report_only=args.report_only, **options)
    print(report.read_text())
    print(f"report: {report}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    result = push_to_hub(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run, commit_message=args.message)
    if args.dry_run:
        print(f"dry run: would upload to {result.repo_id} (private={args.private}):")
    else:
        print(f"uploaded to {result.repo_id}: {result.commit_url}")
    for name in result.files:
        print(f"  {name}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    latency = None
    if args.latency:
        check_readable(args.latency, ArgumentError)
        try:
            latency = json.loads(Path(args.latency).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArgumentError(f"--latency {args.latency} is not JSON ({e}); give a file like "
                                '{"onnxruntime CPU, batch 1": 0.8}') from None
        if not isinstance(latency, dict) or not all(isinstance(v, (int, float)) for v in latency.values()):
            raise ArgumentError(f"--latency {args.latency} must map each setting to milliseconds, e.g. "
                                '{"onnxruntime CPU, batch 1": 0.8}')
    print(write_run_card(args.run_dir, latency=latency, repo_id=args.repo_id))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    results = predict(args.images, args.model, top_k=args.top_k, batch_size=args.batch_size, progress=not args.quiet)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.1%}" for t in r["top"]))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    folder = release(args.run_dir, args.tag, data_dir=args.data_dir, out_root=args.out_root, tags_file=args.tags_file,
                     device=args.device, card_only=args.card_only)
    print(f"rewrote the card and run records of {folder}" if args.card_only else f"wrote {folder} and pinned it in {args.tags_file}")
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "list")
    p.add_argument("pattern", nargs="*", help="shell-style wildcards, e.g. 'googlenet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with published weights")
    p.set_defaults(func=cmd_list)

    p = add_command(sub, "info")
    p.add_argument("pattern", nargs="*", help="shell-style wildcards over archs and tags, e.g. 'googlenet*' or "
                                              "'*.cifar10_paper'")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="only tags (--pretrained) or only archs (--no-pretrained); default both, each at its own input")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="e.g. 3 32 32 for CIFAR-10")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)


def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "push")
    p.add_argument("folder", help="e.g. runs/NAME/model")
    p.add_argument("repo_id", help="owner/name; the token comes from HF_TOKEN or 'hf auth login'")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", action="store_true", help="check the folder and list the files, upload nothing")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=cmd_push)

    p = add_command(sub, "card")
    p.add_argument("run_dir", help="the --out directory of zoo train")
    p.add_argument("--latency", metavar="JSON", help='file mapping setting to milliseconds, e.g. {"onnxruntime CPU, batch 1": 0.8}')
    p.add_argument("--repo-id", help="owner/name, for the card's usage snippet")
    p.set_defaults(func=cmd_card)

    p = add_command(sub, "release")
    p.add_argument("run_dir", help="the --out directory of a finished zoo train")
    p.add_argument("tag", help="the tag, e.g. cifar10_paper: the weights become ARCH.TAG")
    p.add_argument("--data-dir", help="directory with the dataset's .npz; the full test set measures the card's accuracy")
    p.add_argument("--out-root", default=str(BUNDLED_DIR), help="where the ARCH.TAG folder goes (default: model_cards/)")
    p.add_argument("--tags-file", default=str(TAGS_FILE), help="the pretrained.json to pin the tag in")
    p.add_argument("--device", default="cpu", help="device for the accuracy measurement (fp32)")
    p.add_argument("--card-only", action="store_true",
                   help="rewrite a bundled tag's card and run records from its run; the weights and pin stay")
    p.set_defaults(func=cmd_release)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...; any size or mode) or folders of them")
    p.add_argument("--model", required=True,
                   help="a pretrained tag (googlenet_res5x5.cifar10_paper), a save_pretrained folder, hf-hub:owner/name, "
                        "or an .onnx file zoo exported (run by onnxruntime)")
    p.add_argument("--top-k", type=positive(int), default=5, help="classes shown per image (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per image")
    p.add_argument("--batch-size", type=positive(int), default=256, help="images per forward pass (default: %(default)s)")
    add_quiet(p)
    p.set_defaults(func=cmd_predict)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train")
    p.add_argument("model", help="registry name, e.g. resnet18")
    p.add_argument("--dataset", default=DEFAULT_DATASET, type=dataset_name, metavar="DATASET",
                   help=f"{', '.join(list_datasets())} (default: %(default)s), or {FOLDER_PREFIX}PATH: an image folder, one "
                        "subfolder of images per class")
    p.add_argument("--init", metavar="WEIGHTS", help="fine-tune: start from a tag (googlenet_res5x5.cifar10_paper), a saved "
                                                     "folder or hf-hub:owner/name; the head is fitted to the dataset")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="the images are mirror-symmetric: flip augmentation and flip-averaged evaluation (default: the "
                        "dataset's own: yes for CIFAR-10, no for MNIST and for image folders)")
    p.add_argument("--recipe", choices=RECIPES, help="paper: the paper's tables (the default); fast: ours; finetune: "
                                                    "for --init (its default)")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATASET-RECIPE)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak / initial learning rate")
    p.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE", help="e.g. stem=cifar, aux_logits=false")
    p.add_argument("--recipe-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE", help="any recipe field, e.g. plateau_patience=10")
    p.add_argument("--data-dir", help="directory with the dataset's NAME.npz (default $ZOO_DATA_DIR, then torchvision)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="train on N synthetic images (no data needed)")
    p.add_argument("--val-split", type=int, default=0, metavar="N", help="hold out N training images; the plateau watches them")
    p.add_argument("--train-subset", type=int, default=0, metavar="N")
    p.add_argument("--test-subset", type=int, default=0, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--records-only", action="store_true",
                   help="write run.json and metrics.jsonl only: no resume state, no finished model (a check)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_train)

    p = add_command(sub, "eval")
    p.add_argument("model", help="a pretrained tag (googlenet_res5x5.cifar10_paper), or the arch --weights belong to")
    p.add_argument("--weights", help="a .safetensors file, a save_pretrained folder or hf-hub:owner/name[@rev] (default: the tag's)")
    p.add_argument("--dataset", type=dataset_name, metavar="DATASET",
                   help=f"{', '.join(list_datasets())} or {FOLDER_PREFIX}PATH (default: the tag's)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", action="store_true", help="average the logits of each image and its mirror")
    p.add_argument("--test-subset", type=positive(int), default=0, metavar="N",
                   help="a seeded random N of the test images (default: all of them)")
    p.add_argument("--out", help="directory for eval.json and confusion.png")
    add_quiet(p)
    p.set_defaults(func=cmd_eval)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "reproduce")
    p.add_argument("experiment", nargs="+", choices=[*EXPERIMENTS, "all"], help="one or more; runs they share are trained once")
    p.add_argument("--out", default="reproduce", help="directory for runs, curves and report.md")
    p.add_argument("--quick", action="store_true", help="a few synthetic images on the CPU: checks the machinery only")
    p.add_argument("--epochs", type=int, help="override every run's epochs (the recipes' defaults are the paper's)")
    p.add_argument("--recipe", action="append", choices=RECIPES, help="only these recipes (default: the experiment's)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=positive(int), default=1, help="concurrent training processes (they can share one GPU)")
    p.add_argument("--report-only", action="store_true", help="train nothing; write the report from the runs in --out")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="N",
                   help="one value: that many seeds (0..N-1); several: those seeds (default: seed 0 only)")
    p.add_argument("--val-split", type=int, default=5000, metavar="N",
                   help="training images held out to select epochs and steer plateaus (0: the paper's protocol, the test set)")
    p.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="applied to every run, e.g. stem=imagenet for the fast recipe in the paper's configuration")
    p.add_argument("--compress", action="store_true",
                   help="with --epochs: squeeze a step schedule into the epochs run (default: its first epochs, exactly)")
    p.add_argument("--dataset", type=registered_dataset, metavar="DATASET",
                   help=f"run every experiment on another registered dataset ({', '.join(list_datasets())})")
    p.add_argument("--skip", action="append", default=[], metavar="RUN",
                   help="leave out a run (its label or arch, e.g. vgg19); the report marks it left out")
    p.add_argument("--plan", action="store_true", help="train nothing: print the runs, their minutes on each machine (from recorded runs' rates), disk, and each claim's power")
    p.add_argument("--throughput", type=positive(float), metavar="IMG_S", help="with --plan: img/s per process instead of the measured ones")
    p.set_defaults(func=cmd_reproduce)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """zoo's own subcommands, with their arguments (zoo.cli adds the plugins' and parses)."""
    for add in (_add_inspect, _add_predict, _add_train, _add_reproduce, _add_publish):
        add(sub)
