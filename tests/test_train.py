"""The trainer: learning, exact resume, crash safety, non-finite guard, DDP."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.cli import main
from zoo.core.errors import TrainingError
from zoo.data.loading import synthetic
from zoo.hub.rundir import RunDir
from zoo.hub.weights import load_tensors
from zoo.train.loop import TrainConfig, train
from zoo.train.recipes import get_recipe

REPO = Path(__file__).resolve().parents[1]

# the machinery tests' run: the guide's tiny family (conftest.tinynet, a few KB of weights and momentum per checkpoint,
# where resnet18's were 90 MB), 8 steps an epoch; the real MNIST test below learns with a paper model
TINY = dict(arch="tinynet", dataset="mnist", recipe="paper", synthetic=256, epochs=3, batch_size=32, lr=0.02, progress=False)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_tensors(RunDir(run_dir).state)
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, f"{len(unequal)} tensors differ, e.g. {unequal[:3]}"


@pytest.fixture(scope="module")
def reference_run(module_tmp, tiny_arch) -> Path:
    """One uninterrupted TINY run, shared by the resume tests."""
    out = module_tmp("reference")
    train(TrainConfig(out=str(out), **TINY))
    return out


@pytest.mark.slow
def test_loss_falls_and_run_dir_is_complete(reference_run):
    history = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for key in ("lr", "train_loss", "train_err", "test_loss", "test_err", "test_top5_err", "epoch_s", "img_s"):
        assert key in history[0]
    run = json.loads((reference_run / "run.json").read_text())
    assert run["arch"] == "tinynet" and run["model_kwargs"]["in_chans"] == 1 and len(run["dataset_sha256"]) == 64
    assert (reference_run / "model" / "model.safetensors").is_file()


def test_records_only_writes_the_same_records_and_nothing_else(tmp_path, tiny_arch, capsys):
    """--records-only (what reproduce --quick runs) keeps run.json and metrics.jsonl, the same rows as a full run's,
    and neither the resume state nor the finished model, which the full run (the negative control) writes."""
    args = ["train", "tinynet", "--dataset", "mnist", "--synthetic", "64", "--epochs", "2", "--batch-size", "32",
            "--device", "cpu", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "full")]) == main([*args, str(tmp_path / "records"), "--records-only"]) == 0
    full, records = (json.loads(s) for s in capsys.readouterr().out.replace("}\n{", "}\0{").split("\0"))
    assert {**full, "train_seconds": 0} == {**records, "train_seconds": 0}
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["metrics.jsonl", "run.json"]
    assert {"metrics.jsonl", "run.json", "state.safetensors", "model"} <= {p.name for p in (tmp_path / "full").iterdir()}
    rows = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("full", "records")]
    assert [json.loads(r)["train_loss"] for r in rows[0]] == [json.loads(r)["train_loss"] for r in rows[1]]


@pytest.mark.slow
def test_existing_run_is_never_overwritten(reference_run):
    with pytest.raises(TrainingError, match="--resume"):
        train(TrainConfig(out=str(reference_run), **TINY))


@pytest.mark.slow
def test_resume_refuses_different_settings(reference_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reference_run, run)
    with pytest.raises(TrainingError, match="recipe.lr"):
        train(TrainConfig(out=str(run), resume=True, **{**TINY, "lr": 0.5}))


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_is_bitwise_equal(reference_run, tmp_path):
    run = tmp_path / "killed"
    # a process of its own that SIGKILLs itself at epoch 2, step 5 of 8: nothing of it runs after, at any machine speed
    code = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "import zoo.train.loop as T\n"
        "from conftest import tiny_registered\n"
        "real, calls = T.compute_loss, []\n"
        "def loss_then_kill(out, y, recipe):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 13:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(out, y, recipe)\n"
        "T.compute_loss = loss_then_kill\n"
        "with tiny_registered():\n"
        f"    T.train(T.TrainConfig(out={str(run)!r}, **{TINY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(load_tensors(RunDir(run).state)[1]["zoo_train_state"])
    assert (saved["epoch"], saved["step"]) == (1, 0), "the last checkpoint is the first epoch's end"
    # negative control: the checkpoint left behind is not the finished weights
    with pytest.raises(AssertionError):
        assert_bitwise_equal(weights(run), weights(reference_run))

    train(TrainConfig(out=str(run), resume=True, **TINY))
    assert_bitwise_equal(weights(run), weights(reference_run))


@pytest.mark.slow
def test_sigint_saves_mid_epoch_and_resume_is_bitwise_equal(reference_run, tmp_path, monkeypatch):
    import zoo.train.loop as T

    run = tmp_path / "interrupted"
    calls = {"n": 0}
    real_compute_loss = T.compute_loss

    def loss_then_sigint(out, y, recipe):
        calls["n"] += 1
        if calls["n"] == 13:  # epoch 2, step 5 of 8
            os.kill(os.getpid(), signal.SIGINT)
        return real_compute_loss(out, y, recipe)

    monkeypatch.setattr(T, "compute_loss", loss_then_sigint)
    stopped = train(TrainConfig(out=str(run), **TINY))
    assert stopped["stopped"] and "--resume" in stopped["message"]
    saved = json.loads(load_tensors(RunDir(run).state)[1]["zoo_train_state"])
    assert (saved["epoch"], saved["step"]) == (1, 5)

    monkeypatch.setattr(T, "compute_loss", real_compute_loss)
    train(TrainConfig(out=str(run), resume=True, **TINY))
    assert_bitwise_equal(weights(run), weights(reference_run))


@pytest.mark.slow
def test_crash_while_writing_checkpoint_keeps_previous(tmp_path, monkeypatch, tiny_arch):
    import zoo.hub.weights as C

    run = tmp_path / "crash"
    train(TrainConfig(out=str(run), **{**TINY, "epochs": 1}))
    before = weights(run)

    def torn_replace(src, dst):
        raise OSError("disk vanished mid-write")

    monkeypatch.setattr(C.os, "replace", torn_replace)
    with pytest.raises(OSError, match="disk vanished"):
        train(TrainConfig(out=str(run), resume=True, **{**TINY, "epochs": 2}))
    monkeypatch.undo()
    assert_bitwise_equal(weights(run), before)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"


@pytest.mark.slow
def test_non_finite_loss_stops_without_a_bad_checkpoint(tmp_path, monkeypatch, tiny_arch):
    import zoo.train.loop as T

    run = tmp_path / "nan"
    train(TrainConfig(out=str(run), **{**TINY, "epochs": 1}))
    before = weights(run)
    real_compute_loss = T.compute_loss

    def exploding(out, y, recipe):
        loss, logits = real_compute_loss(out, y, recipe)
        return loss * float("nan"), logits

    monkeypatch.setattr(T, "compute_loss", exploding)
    with pytest.raises(TrainingError, match="non-finite"):
        train(TrainConfig(out=str(run), resume=True, **{**TINY, "epochs": 2}))
    assert_bitwise_equal(weights(run), before)
    assert all(torch.isfinite(v).all() for v in before.values())


def test_lr_schedules_are_pure_functions_of_the_step():
    paper_gn = get_recipe("paper", "googlenet", "cifar10")
    assert paper_gn.lr_at(0, 100) == pytest.approx(0.1)
    assert paper_gn.lr_at(8 * 100, 100) == pytest.approx(0.1 * 0.96)  # "decrease by 4% every 8 epochs"
    assert paper_gn.lr_at(16 * 100 - 1, 100) == pytest.approx(0.1 * 0.96)
    fast = get_recipe("fast", "resnet18", "cifar10", epochs=10)
    peak = max(fast.lr_at(s, 100) for s in range(1000))
    assert peak == pytest.approx(fast.lr) and fast.lr_at(999, 100) < 0.01 * fast.lr
    vgg = get_recipe("paper", "vgg19", "mnist")
    assert (vgg.lr, vgg.batch_size, vgg.plateau_patience, vgg.augment) == (0.01, 256, 5, "none")
    assert get_recipe("paper", "vgg19", "cifar10").augment == "paper"


def test_plateau_drops_after_patience():
    from zoo.train.loop import LoopState, _plateau

    recipe = get_recipe("paper", "resnet18", "cifar10")  # patience 1
    state = LoopState()
    for err in (50.0, 40.0, 41.0, 40.5):  # better, better, worse (1 bad), worse (2 bad > 1: drop)
        _plateau(state, recipe, err)
    assert state.plateau_scale == pytest.approx(0.1)


@pytest.mark.parametrize("patience", [0, 1, 5])
def test_plateau_matches_torch_reduce_lr_on_plateau(patience):
    from zoo.train.loop import LoopState, _plateau

    recipe = get_recipe("paper", "vgg19", "cifar10", plateau_patience=patience)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=recipe.lr)
    torch_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=recipe.plateau_factor, patience=patience)
    state = LoopState()
    errors = [50.0, 40.0] + [40.0 + 0.001 * (i % 3) for i in range(60)]  # a long plateau: every drop, down to eps
    for err in errors:
        _plateau(state, recipe, err)
        torch_plateau.step(err)
        assert recipe.lr * state.plateau_scale == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-8)  # eps stops the drops at the paper's 1e-8 floor


@pytest.mark.real_data
@pytest.mark.slow
def test_short_real_mnist_run_learns(data_dir, tmp_path):
    # measured on the 2-core CPU machine: 95.4% test accuracy (4.6% error) on 1000 test images
    # after 2 epochs over 4096 training images (paper recipe at lr 0.02, resnet18 paper stem), ~60 s
    summary = train(TrainConfig(
        arch="resnet18", dataset="mnist", recipe="paper", data_dir=str(data_dir), train_subset=4096,
        test_subset=1000, epochs=2, batch_size=64, lr=0.02, out=str(tmp_path / "mnist"), progress=False,
    ))
    assert summary["final_test_err"] < 8.0


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one(tmp_path):
    """Same global batch: 2 processes x 16 follow 1 process x 32 (VGG without BN: exact up to float order)."""
    common = ["vgg11", "--dataset", "cifar10", "--synthetic", "128", "--epochs", "2", "--batch-size", "32",
              "--model-arg", "head=cifar", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    assert main(["train", *common, "--out", str(single)]) == 0  # in this process: one interpreter fewer to start
    double = tmp_path / "ddp"
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "zoo.cli", "train", *common, "--out", str(double)],
        cwd=REPO, env=env, check=True,
    )
    one = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (double / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((double / "run.json").read_text())["world_size"] == 2
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)


@pytest.mark.slow
def test_eval_reports_errors_per_class_and_confusion(reference_run, tmp_path):
    import numpy as np

    from zoo.core.errors import CheckpointError
    from zoo.train.loop import evaluate_checkpoint

    ds = synthetic("mnist", n_train=16, n_test=64, seed=0)
    np.savez(tmp_path / "mnist.npz", x_train=ds.x_train[:, 0, 2:30, 2:30].numpy(), y_train=ds.y_train.numpy().astype(np.uint8),
             x_test=ds.x_test[:, 0, 2:30, 2:30].numpy(), y_test=ds.y_test.numpy().astype(np.uint8))
    result = evaluate_checkpoint("tinynet", reference_run / "model", "mnist", data_dir=str(tmp_path), out=tmp_path / "eval")
    confusion = torch.tensor(result["confusion"])
    assert confusion.sum() == 64 and result["images"] == 64
    assert result["err"] == pytest.approx(100 * (1 - confusion.diag().sum().item() / 64))
    assert set(result["per_class_acc"]) == {str(i) for i in range(10)}
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["err"] == result["err"]
    assert (tmp_path / "eval" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    part = evaluate_checkpoint("tinynet", reference_run / "model", "mnist", data_dir=str(tmp_path), test_subset=16)
    assert part["images"] == 16 and torch.tensor(part["confusion"]).sum() == 16  # zoo eval --test-subset
    with pytest.raises(CheckpointError, match="holds 'tinynet' weights, not 'vgg11'"):
        evaluate_checkpoint("vgg11", reference_run / "model", "mnist", data_dir=str(tmp_path))


def test_compressed_step_schedule_is_a_miniature_of_the_full_one():
    full = get_recipe("paper", "googlenet", "cifar10")  # x0.96 every 8 of 160 epochs
    mini = get_recipe("paper", "googlenet", "cifar10", epochs=20, compress_from=160)
    steps = 100
    for fraction in (0.0, 0.1, 0.37, 0.5, 0.99):
        assert mini.lr_at(int(fraction * 20 * steps), steps) == pytest.approx(full.lr_at(int(fraction * 160 * steps), steps))
    assert mini.lr_at(20 * steps - 1, steps) == pytest.approx(0.1 * 0.96**19)
    plain = get_recipe("paper", "googlenet", "cifar10", epochs=20)  # negative control: 2 drops in 20 epochs
    assert plain.lr_at(20 * steps - 1, steps) == pytest.approx(0.1 * 0.96**2)
