"""Training throughput: zoo's device-resident pipeline vs the usual DataLoader, side by side.

Three pipelines drive the same model, optimizer and step (bf16 autocast and
channels_last on CUDA), measured in one run:

- ceiling: the model stepping on one resident batch (no data work at all);
- zoo: ``zoo.data.loading.DeviceLoader`` with the paper's augmentation, on the device;
- dataloader-N: torchvision's transforms for the paper's augmentation in a
  ``torch.utils.data.DataLoader`` with N workers, pinned memory, non-blocking copies.

Prints one JSON object: images/s of each, ours as a fraction of the ceiling,
and ours over each DataLoader. Synthetic uint8 images unless --data-dir holds
cifar10.npz (the cost per image is the same).

    python benchmarks/train_throughput.py --model resnet18 --model-arg stem=cifar --workers 2 8
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch import nn

import zoo
from zoo.core.console import key_value
from zoo.data.datasets import get_spec
from zoo.data.loading import (
    PAPER_CROP_RATIO,
    PAPER_CROP_SCALE,
    PAPER_JITTER,
    PAPER_ROTATION_DEG,
    DeviceLoader,
    load_dataset,
    synthetic,
)
from zoo.train.loop import train_step
from zoo.train.recipes import get_recipe


class PaperTransformDataset(torch.utils.data.Dataset):
    """CIFAR-10 from uint8 HWC arrays through torchvision's PIL transforms, as a user would write it."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std) -> None:
        import torchvision.transforms as T

        self.x, self.y = x, y
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=PAPER_CROP_SCALE, ratio=PAPER_CROP_RATIO),
            T.RandomHorizontalFlip(),
            T.RandomRotation(PAPER_ROTATION_DEG),
            T.ColorJitter(PAPER_JITTER, PAPER_JITTER, PAPER_JITTER),
            T.ToTensor(),
            T.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def make_step(model: nn.Module, device: torch.device, recipe):
    """zoo's training step (zoo.train.loop.train_step) at a fixed learning rate."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=device.type == "cuda" or None)
    return lambda x, y: train_step(model, opt, x, y, recipe, 0.01)


def timed(batches, step, device: torch.device, steps: int, warmup: int, batch_size: int) -> float:
    """Images per second over ``steps`` steps after ``warmup`` steps."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def repeat(batch):
    while True:
        yield batch


def endless(loader_fn):
    epoch = 0
    while True:
        yield from loader_fn(epoch)
        epoch += 1


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="*", default=[2, 8])
    p.add_argument("--augment", default="paper", choices=["paper", "crop_flip"])
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    info = get_spec("cifar10")
    n = max(args.batch_size * (args.steps + args.warmup), 10_000)
    data = load_dataset("cifar10", args.data_dir, download=False) if args.data_dir else synthetic("cifar10", n_train=n, n_test=16)
    recipe = get_recipe("paper", args.model, "cifar10")
    model = zoo.create_model(args.model, num_classes=10, **dict(args.model_arg)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    model.train()
    step = make_step(model, device, recipe)
    common = dict(steps=args.steps, warmup=args.warmup, batch_size=args.batch_size, device=device)

    loader = DeviceLoader(
        data.x_train, data.y_train, batch_size=args.batch_size, mean=info.mean, std=info.std,
        augment=args.augment, device=device, channels_last=device.type == "cuda",
    )
    x0, y0 = next(loader.batches(0))
    results: dict = {
        "model": args.model,
        "model_args": dict(args.model_arg),
        "batch_size": args.batch_size,
        "augment": args.augment,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "img_s": {},
    }
    results["img_s"]["ceiling"] = timed(repeat((x0, y0)), step, **common)
    results["img_s"]["zoo"] = timed(endless(loader.batches), step, **common)

    x_hwc = data.x_train.permute(0, 2, 3, 1).contiguous().numpy()
    ds = PaperTransformDataset(x_hwc, data.y_train.numpy(), info.mean, info.std)
    for workers in args.workers:
        dl = torch.utils.data.DataLoader(
            ds, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        )

        def batches(dl=dl):
            while True:
                for x, y in dl:
                    x = x.to(device, non_blocking=True, memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format)
                    yield x, y.to(device, non_blocking=True)

        results["img_s"][f"dataloader_{workers}"] = timed(batches(), step, **common)

    ims = results["img_s"]
    results["zoo_over_ceiling"] = ims["zoo"] / ims["ceiling"]
    for workers in args.workers:
        results[f"zoo_over_dataloader_{workers}"] = ims["zoo"] / ims[f"dataloader_{workers}"]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        from zoo.core.files import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode())
    return results


if __name__ == "__main__":
    main()
