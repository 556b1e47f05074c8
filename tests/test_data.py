"""Datasets and the device-resident loader."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.core.errors import DataError
from zoo.data.datasets import DataSpec, register_dataset, unregister_dataset
from zoo.data.loading import DeviceLoader, crop_flip, load_dataset, synthetic


def test_npz_layout_and_mnist_padding(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), y_train=np.arange(20, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), y_test=np.arange(10, dtype=np.uint8),
    )
    ds = load_dataset("mnist", tmp_path, download=False)
    assert ds.x_train.shape == (20, 1, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.y_train.dtype == torch.int64
    assert ds.x_train[:, :, :2].sum() == 0 and ds.x_train[:, :, :, -2:].sum() == 0  # zero padding by 2
    assert torch.equal(ds.x_train[:, 0, 2:30, 2:30], torch.from_numpy(np.load(tmp_path / "mnist.npz")["x_train"]))


def test_bad_npz_is_refused_with_the_expected_layout(tmp_path):
    np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((4, 3, 32, 32), np.uint8), y_train=np.zeros(4, np.uint8),
             x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="HWC"):
        load_dataset("cifar10", tmp_path, download=False)


def test_missing_data_says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10", tmp_path, download=False)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_val_split_is_disjoint_and_seeded():
    ds = synthetic("cifar10", n_train=200, n_test=10)
    from zoo.data.loading import split_validation

    a, b = split_validation(ds, 50, seed=1), split_validation(ds, 50, seed=1)
    assert len(a.y_val) == 50 and len(a.y_train) == 150
    assert torch.equal(a.x_val, b.x_val)
    assert a.sha256 == ds.sha256  # the checksum names the source data, not the split


def test_loader_is_a_pure_function_of_seed_and_epoch():
    ds = synthetic("cifar10", n_train=64, n_test=8)
    kw = dict(batch_size=16, mean=ds.spec.mean, std=ds.spec.std, augment="paper", seed=3)
    a, b = DeviceLoader(ds.x_train, ds.y_train, **kw), DeviceLoader(ds.x_train, ds.y_train, **kw)
    first = list(a.batches(2))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, b.batches(2)))
    resumed = list(b.batches(2, start_step=2))
    assert torch.equal(resumed[0][0], first[2][0])
    assert not torch.equal(next(a.batches(3))[0], first[0][0])
    # every image exactly once per epoch
    assert sorted(torch.cat([y for _, y in first]).tolist()) == sorted(ds.y_train.tolist())


def test_ddp_ranks_split_each_global_batch():
    ds = synthetic("mnist", n_train=32, n_test=8)
    kw = dict(batch_size=8, mean=ds.spec.mean, std=ds.spec.std, seed=0)
    whole = list(DeviceLoader(ds.x_train, ds.y_train, **kw).batches(0))
    ranks = [list(DeviceLoader(ds.x_train, ds.y_train, rank=r, world_size=2, **kw).batches(0)) for r in (0, 1)]
    for step, (x, _) in enumerate(whole):
        assert torch.equal(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)


def test_crop_flip_matches_a_reference_crop():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    out = crop_flip(x, torch.tensor([[4, 4], [5, 3]]), torch.tensor([False, True]))
    assert torch.equal(out[0], x[0])  # offset (4, 4) in the 4-padded image is the original
    padded = torch.nn.functional.pad(x[1], (4, 4, 4, 4))
    assert torch.equal(out[1], padded[:, 5:9, 3:7].flip(2))


def test_normalisation_uses_dataset_statistics():
    ds = synthetic("cifar10", n_train=16, n_test=4)
    loader = DeviceLoader(ds.x_train, ds.y_train, batch_size=16, mean=ds.spec.mean, std=ds.spec.std, shuffle=False)
    x, _ = next(loader.batches(0))
    expected = (ds.x_train.float() / 255 - torch.tensor(ds.spec.mean).view(1, 3, 1, 1)) / torch.tensor(ds.spec.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)


@pytest.mark.real_data
@pytest.mark.slow
def test_real_datasets_match_their_readme(data_dir):
    mnist = load_dataset("mnist", data_dir, download=False)
    assert len(mnist.y_train) == 60000 and len(mnist.y_test) == 10000
    assert torch.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    cifar = load_dataset("cifar10", data_dir, download=False)
    assert cifar.x_train.shape == (50000, 3, 32, 32)
    # README: train image 0 (frog) starts 59 43 50 in CHW order, ends 140 84 72
    frog = cifar.x_train[cifar.y_train == 6][0].flatten()
    assert frog[:3].tolist() == [59, 43, 50] and frog[-3:].tolist() == [140, 84, 72]


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_jitter_is_torchvisions_arithmetic(channels):
    from torchvision.transforms.v2 import functional as TF

    from zoo.data.loading import paper_augment

    g = torch.Generator().manual_seed(0)
    n = 6
    x = torch.rand(n, channels, 32, 32, generator=g)
    jitter = 0.5 + torch.rand(n, 3, generator=g)  # brightness, contrast, saturation factors in [0.5, 1.5)
    identity = {"w": torch.ones(n), "h": torch.ones(n), "centre": torch.zeros(n, 2), "angle": torch.zeros(n),
                "flip": torch.zeros(n, dtype=torch.bool), "jitter": jitter}
    ours = paper_augment(x, identity)
    for i in range(n):
        b, c, s = jitter[i].tolist()
        expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], b), c), s)
        torch.testing.assert_close(ours[i], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, x, atol=1e-3)  # negative control: the factors did something


@pytest.fixture(params=[3, 1], ids=["rgb", "grey"])
def toy_dataset(request):
    """The 'add a dataset' step of docs/extending.md: one spec, registered, backed by arrays (3 classes of 28x28
    images, RGB or greyscale, entering zero-padded to 32x32, as MNIST does, so every family takes them)."""
    c = request.param
    rng = np.random.default_rng(0)
    shape = (28, 28, 3) if c == 3 else (28, 28)
    protos = rng.integers(0, 256, (3, *shape))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        return np.clip(protos[y] + rng.normal(0, 20, (n, *shape)), 0, 255).astype(np.uint8), y.astype(np.uint8)

    (x_train, y_train), (x_test, y_test) = draw(96), draw(30)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = register_dataset(DataSpec("toy", "Toy", ("red", "green", "blue"), (0.5,) * c, (0.25,) * c, (c, 32, 32), pad=2,
                                     splits=(96, 30), arrays=lambda: arrays))
    yield spec
    unregister_dataset("toy")


def test_a_registered_dataset_trains_predicts_and_plans_with_no_other_edit(toy_dataset, tiny_family, tmp_path, capsys):
    """The dataset guide's fast check, for a greyscale and an RGB dataset: its record reaches the model (the guide's
    tiny family: the dataset is under test, not the architecture), predict and the plan (whose 1-channel case once
    crashed)."""
    run = tmp_path / "run"
    assert main(["train", tiny_family, "--dataset", "toy", "--recipe", "paper", "--epochs", "1", "--batch-size", "32",
                 "--device", "cpu", "--out", str(run), "--quiet"]) == 0
    model = zoo.load_model(run / "model")
    data = model.data_config
    assert (data.input_size, data.label_names, data.crop_pct) == (toy_dataset.input_size, ("red", "green", "blue"), 32 / 28)
    capsys.readouterr()
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--model", str(run / "model"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"] in {"red", "green", "blue"}
    assert main(["reproduce", "fig5", "--dataset", "toy", "--plan", "--out", str(tmp_path / "r")]) == 0
    assert "toy-paper-resnet18-val5000" in capsys.readouterr().out


@pytest.mark.slow
def test_a_registered_dataset_works_everywhere_with_no_other_edit(toy_dataset, tiny_family, tmp_path, capsys):
    """Train, eval, predict and bench on the toy dataset, with the guide's tiny family (the dataset is under test)."""
    run = tmp_path / "run"
    assert main(["train", tiny_family, "--dataset", "toy", "--recipe", "fast", "--epochs", "1", "--batch-size", "16",
                 "--device", "cpu", "--out", str(run), "--quiet"]) == 0
    assert zoo.load_model(run / "model").pretrained_cfg["label_names"] == ("red", "green", "blue")
    assert main(["eval", tiny_family, "--weights", str(run / "model"), "--dataset", "toy", "--device", "cpu", "--quiet"]) == 0
    assert f"{tiny_family} on toy test (30 images)" in capsys.readouterr().out
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--model", str(run / "model"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"] in {"red", "green", "blue"}
    assert main(["bench", tiny_family, "--input", "toy", "--weights", f"{tiny_family}={run / 'model'}", "--batch-sizes", "1",
                 "--rounds", "2", "--threads", "1", "--out", str(tmp_path / "bench"), "--quiet"]) == 0
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["settings"]["input_size"] == list(toy_dataset.input_size) and results["data"]["test_images"] == 30
    assert main(["reproduce", "fig5", "--dataset", "toy", "--plan", "--out", str(tmp_path / "r")]) == 0
    assert "toy-paper-resnet18-val5000" in capsys.readouterr().out
