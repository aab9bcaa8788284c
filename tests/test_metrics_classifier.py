"""The shipped digit classifiers: accuracy, integrity (sha256), no pickle, offline, shapes, deterministic training."""

import dataclasses
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from hubgen import data as hdata
from hubgen.metrics import classifier as clf
from hubgen.metrics.train_classifier import main as train_main
from hubgen.metrics.train_classifier import random_translate


def _accuracy(model, ds) -> float:
    _, probs = clf.extract(model, ds.images.float() / 255.0)
    return float((probs.argmax(1) == ds.labels.numpy()).mean())


def test_digits_classifier_accuracy():
    model = clf.load_classifier("digits")
    acc = _accuracy(model, hdata.load_dataset("digits", "test"))
    assert acc >= 0.97
    assert acc == pytest.approx(clf.CLASSIFIERS["digits"].test_accuracy, abs=1e-9)  # the recorded figure


def test_mnist_classifier_accuracy(mnist_npz):
    model = clf.load_classifier(28)
    acc = _accuracy(model, hdata.load_dataset(mnist_npz, "test"))
    assert acc >= 0.99
    assert acc == pytest.approx(clf.CLASSIFIERS["mnist"].test_accuracy, abs=1e-9)


def test_registry_and_ids():
    assert clf.load_classifier("digits") is clf.load_classifier(8)  # cached, and sizes resolve to names
    for name, entry in clf.CLASSIFIERS.items():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        info = clf.classifier_info(name)
        assert info["sha256"] == entry.sha256 and info["feature_dim"] == 128 and info["version"] == entry.version
        assert entry.sha256[:12] in clf.feature_network_id(name)
        assert clf.feature_network_id(name).startswith(f"hubgen-digit-classifier/{name} {entry.version}")
        training = json.loads((entry.folder / "training.json").read_text())
        assert training["weights_sha256"] == entry.sha256
        assert training["test_accuracy"] == pytest.approx(entry.test_accuracy, abs=1e-9)
    with pytest.raises(ValueError, match="accepted are 'mnist', 'digits'"):
        clf.load_classifier("cifar10")
    with pytest.raises(ValueError, match="Unknown digit classifier"):
        clf.load_classifier(32)


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch):
    entry = clf.CLASSIFIERS["digits"]
    folder = tmp_path / "digits"
    shutil.copytree(entry.folder, folder)
    monkeypatch.setitem(clf.CLASSIFIERS, "digits", dataclasses.replace(entry, folder=folder))
    assert clf.load_classifier("digits").config.sample_size == 8  # an identical copy loads

    weights = folder / "diffusion_pytorch_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01  # flip one bit of the last tensor byte
    weights.write_bytes(bytes(raw))
    changed = clf.file_sha256(weights)
    with pytest.raises(ValueError) as err:
        clf.load_classifier("digits")
    assert entry.sha256 in str(err.value) and changed in str(err.value)


def test_no_pickle_and_offline(monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle loader was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    clf._load.cache_clear()  # load afresh, from the files
    for entry in clf.CLASSIFIERS.values():
        names = sorted(p.name for p in entry.folder.iterdir())
        assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names
        assert "diffusion_pytorch_model.safetensors" in names and "config.json" in names
        assert entry.weights_file.stat().st_size < 2 * 1024 * 1024
    for name in clf.CLASSIFIERS:
        model = clf.load_classifier(name)
        assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_extract_shapes_and_validation():
    model = clf.load_classifier("digits")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 1, 8, 8, generator=g)
    feats, probs = clf.extract(model, x, batch_size=3)
    assert feats.shape == (7, 128) and feats.dtype == np.float64
    assert probs.shape == (7, 10) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    assert (feats >= 0).all()  # post-ReLU
    torch.testing.assert_close(torch.from_numpy(feats), model.features(x).double(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        clf.extract(model, torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        clf.extract(model, torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.extract(model, 2 * x - 1)
    with pytest.raises(ValueError, match="uint8"):
        clf.extract(model, (x * 255).to(torch.uint8))


def test_random_translate_is_a_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0
    y = random_translate(x, 2, g)
    rows, cols = (y[:, 0] == 1).nonzero()[:, 1], (y[:, 0] == 1).nonzero()[:, 2]
    assert y.sum().item() == 64  # every pixel moved, none lost (the dot stays inside)
    assert set((rows - 3).tolist()) == set(range(-2, 3)) and set((cols - 4).tolist()) == set(range(-2, 3))


def test_training_is_deterministic_and_recorded(tmp_path, capsys):
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["--dataset", "digits", "--output_dir", str(out), "--epochs", "1", "--seed", "3"]
        assert train_main(args) == 0
        runs.append(out)
    a, b = ((r / "diffusion_pytorch_model.safetensors").read_bytes() for r in runs)
    assert a == b  # bit-identical weights from the same seed
    info = json.loads((runs[0] / "training.json").read_text())
    assert info["seed"] == 3 and info["epochs"] == 1 and info["dataset"] == "digits"
    assert info["weights_sha256"] == clf.file_sha256(runs[0] / "diffusion_pytorch_model.safetensors")
    assert info["command"].startswith("hubgen metrics train-classifier --dataset digits")
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert info["weights_sha256"] in capsys.readouterr().out
    assert sorted(p.name for p in runs[0].iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training.json",
    ]
    reloaded = clf.DigitClassifier.from_pretrained(runs[0], use_safetensors=True)
    assert reloaded.config.sample_size == 8


@pytest.mark.parametrize(
    "args",
    [
        ["--dataset", "digits"],  # no --output_dir
        ["--dataset", "no-such-dataset", "--output_dir", "OUT"],
        ["--dataset", "digits", "--output_dir", "OUT", "--epochs", "0"],
        ["--dataset", "digits", "--output_dir", "OUT", "--learning_rate", "-1"],
        ["--dataset", "digits", "--output_dir", "OUT", "--widths", "8", "8", "8", "8"],  # 8x8 halved 4 times
        ["--dataset", "digits", "--output_dir", "OUT", "--batch_size", "100000"],
    ],
)
def test_bad_arguments_exit_2(args, tmp_path, capsys):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        train_main(args)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_foreign_output_dir_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--dataset", "digits", "--output_dir", str(tmp_path), "--epochs", "1"])
    assert exit_info.value.code == 2
    assert "notes.txt" in capsys.readouterr().err
