"""Sample quality on data without a shipped classifier (RGB, other sizes): nothing is measured in an unnamed
feature space; a user's classifier from `hubgen metrics train-classifier` measures it, named by its sha256."""

import json

import jinja2
import numpy as np
import pytest
import torch

from hubgen.data import DataSpec, load_dataset
from hubgen.errors import UserInputError
from hubgen.gallery.catalog import ModelEntry, leaderboard_columns, leaderboard_rows
from hubgen.hub import card_data_for
from hubgen.metrics import classifier as clf
from hubgen.metrics import evaluate_samples, format_sample_quality
from hubgen.metrics import sample_quality as sq
from hubgen.metrics.train_classifier import main as train_main
from hubgen.registry import get_family

PALETTE = np.array([[230, 30, 30], [30, 200, 30], [40, 60, 230]], dtype=np.float64)  # class c: a square of colour c
FD_TYPES = {"frechet_distance", "precision", "recall", "coverage"}


def _rgb_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n RGB 16x16 images (n, 3, 16, 16) uint8: a grey noisy background with a 6x6 square of the class colour."""
    labels = rng.integers(0, 3, n)
    x = rng.normal(128, 20, (n, 3, 16, 16))
    for i, c in enumerate(labels):
        top, left = rng.integers(0, 10, 2)
        x[i, :, top : top + 6, left : left + 6] = PALETTE[c][:, None, None] + rng.normal(0, 10, (3, 6, 6))
    return np.clip(x, 0, 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = _rgb_split(160, rng), _rgb_split(48, rng)
    path = tmp_path_factory.mktemp("rgb") / "squares.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    unlabelled = path.with_name("unlabelled.npz")
    np.savez(unlabelled, x_train=x_train, x_test=x_test)
    return path, unlabelled


@pytest.fixture(scope="module")
def user_network(rgb_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier") / "squares-classifier"
    args = ["--dataset", str(rgb_npz[0]), "--output_dir", str(out), "--epochs", "3", "--widths", "8", "16"]
    assert train_main([*args, "--feature_dim", "16", "--batch_size", "16", "--max_shift", "1"]) == 0
    return out


def _images(path, split, n=None):
    ds = load_dataset(path, split)
    return ds.take(len(ds) if n is None else n).float() / 255.0


def _card_data(tmp_path, report):
    return card_data_for(tmp_path, get_family("vae"), {"dataset": "squares"}, {"sample_quality": report})


def _partial(report) -> str:
    template = jinja2.Template((sq.Path(sq.__file__).parents[1] / "cards" / "_sample_quality.md").read_text())
    return template.render(results={"sample_quality": report}, has_nn_grid=True)


def test_rgb_without_a_feature_network_measures_memorization_only(rgb_npz, tmp_path):
    labelled, unlabelled = rgb_npz
    samples = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    report = evaluate_samples(samples, str(labelled), seed=3)
    grid = report.pop("pictures")["nearest_neighbours.png"]
    assert grid.mode == "RGB" and grid.width > 12 * 16
    assert report["feature_network"] is None
    assert report["frechet_distance"] is None and report["prdc"] is None and report["modes"] is None
    reason = report["not_measured"]["reason"]
    assert set(report["not_measured"]["metrics"]) >= FD_TYPES | {"density", "modes"}
    assert reason.startswith("no feature network for 3x16x16 images")
    assert f"hubgen metrics train-classifier --dataset {labelled}" in reason and "--feature_network" in reason
    memo = report["memorization"]
    assert memo["num_samples"] == 12 and memo["num_train"] == 160 and memo["num_test"] == 12
    assert report["num_samples"] == 12 and report["seed"] == 3 and report["image_shape"] == [3, 16, 16]
    json.dumps(report)  # the report goes to eval_results.json as it is

    text = format_sample_quality(report)
    (line,) = [x for x in text.splitlines() if "NOT measured" in x]  # one line says what and why
    assert "Frechet distance" in line and "3x16x16" in line and "features: none" in text
    assert "memorization" in text and "FD-" not in text

    data = _card_data(tmp_path, report)
    assert not {r.metric_type for r in data.eval_results or []} & FD_TYPES  # no model-index rows
    card = _partial(report)
    assert "**Not measured:**" in card and "no feature network for 3x16x16 images" in card
    assert "FD-" not in card and "memorization" in card and "nearest_neighbours.png" in card
    # the gallery leaderboard shows empty cells, not 0
    entry = ModelEntry("rgb-vae", "local", str(tmp_path), family=get_family("vae"), results=data.eval_results or [])
    (row,) = leaderboard_rows([entry])
    cells = dict(zip(leaderboard_columns(), row, strict=True))
    assert [cells[c] for c in ("classifier FD", "precision", "recall", "coverage")] == [None] * 4
    assert cells["FD features and N"] == "" and entry.headline() == "not evaluated"

    # a DataSpec is loaded as it is, and the command in the reason loads the same images
    spec = DataSpec(str(labelled), resolution=8, center_crop=True)
    small = evaluate_samples(torch.rand(12, 3, 8, 8), spec, seed=3)
    assert small["dataset"] == str(labelled) and small["image_shape"] == [3, 8, 8]
    assert "no feature network for 3x8x8" in small["not_measured"]["reason"]
    assert f"--dataset {labelled} --resolution 8 --center_crop --output_dir DIR" in small["not_measured"]["reason"]

    # without labels the reason says a classifier cannot be trained on this data
    unlabelled_report = evaluate_samples(samples, str(unlabelled), seed=3)
    assert "no labels" in unlabelled_report["not_measured"]["reason"]


def test_memorization_on_rgb_flags_copies_and_reads_the_training_split_in_chunks(rgb_npz, monkeypatch):
    labelled, _ = rgb_npz
    copies = _images(labelled, "train", 20)
    whole = evaluate_samples(copies, str(labelled), seed=0)
    assert whole["memorization"]["fraction_closer_than_any_test"] == 1.0
    assert whole["memorization"]["sample_to_train"]["min"] == 0.0  # exact copies: distance 0
    monkeypatch.setattr(sq, "CHUNK_VALUES", 3 * 16 * 16 * 7)  # 7 images a chunk: 23 chunks of the training split
    chunked = evaluate_samples(copies, str(labelled), seed=0)
    assert chunked["memorization"] == whole["memorization"]
    grids = [report["pictures"]["nearest_neighbours.png"].tobytes() for report in (chunked, whole)]
    assert grids[0] == grids[1]


def test_train_classifier_on_rgb_and_evaluate_with_it(rgb_npz, user_network, tmp_path):
    labelled, _ = rgb_npz
    config = json.loads((user_network / "config.json").read_text())
    training = json.loads((user_network / "training.json").read_text())
    assert config["in_channels"] == 3 and config["sample_size"] == 16 and config["num_classes"] == 3
    assert training["shift_fill"] == "edge" and training["num_train_images"] == 160
    assert training["test_accuracy"] > 0.8, training["test_accuracy"]  # colours of squares are easy to tell apart
    sha = clf.file_sha256(user_network / "diffusion_pytorch_model.safetensors")
    assert training["weights_sha256"] == sha

    test, train = _images(labelled, "test"), _images(labelled, "train", 48)
    report = evaluate_samples(train, str(labelled), seed=0, feature_network=user_network)
    noise = evaluate_samples(torch.rand_like(test), str(labelled), seed=0, feature_network=user_network)
    report.pop("pictures")
    net = report["feature_network"]
    assert net["shipped"] is False and net["sha256"] == sha and sha[:12] in net["id"]
    assert net["name"] == "squares-classifier" and net["image_shape"] == [3, 16, 16]
    assert net["trained_on"] == str(labelled) and net["test_accuracy"] == training["test_accuracy"]
    assert report["not_measured"] is None and report["frechet_distance"]["name"] == "FD-squares-classifier"
    fd = report["frechet_distance"]
    assert fd["value"] == fd["floor_train_vs_test"] and fd["floor_n"] == 48  # the samples are the floor's images
    assert fd["value"] < noise["frechet_distance"]["value"] / 3  # the features tell noise from the data
    assert report["modes"]["num_classes"] == 3 and report["prdc"]["k"] == 5
    json.dumps(report)
    assert net["id"] in format_sample_quality(report)

    data = _card_data(tmp_path, report)
    by_type = {r.metric_type: r for r in data.eval_results}
    assert set(by_type) == FD_TYPES and net["id"] in by_type["frechet_distance"].metric_name
    card = _partial(report)
    assert net["id"] in card and "trained with `hubgen metrics train-classifier`" in card and "Not measured" not in card

    # a network for other images is refused, and so are weights changed after training
    with pytest.raises(UserInputError, match="takes 1x8x8 images, but the samples are 3x16x16"):
        evaluate_samples(test, str(labelled), seed=0, feature_network="digits")
    with pytest.raises(UserInputError, match="must be a folder holding config.json"):
        evaluate_samples(test, str(labelled), seed=0, feature_network=tmp_path / "nothing")
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("config.json", "training.json", "diffusion_pytorch_model.safetensors"):
        raw = bytearray((user_network / name).read_bytes())
        if name.endswith(".safetensors"):
            raw[-1] ^= 0x01
        (tampered / name).write_bytes(bytes(raw))
    with pytest.raises(UserInputError, match="changed after training"):
        evaluate_samples(test, str(labelled), seed=0, feature_network=tampered)


def test_train_classifier_takes_the_data_options(rgb_npz, tmp_path):
    out = tmp_path / "small"
    args = ["--dataset", str(rgb_npz[0]), "--resolution", "8", "--center_crop", "--output_dir", str(out)]
    assert train_main([*args, "--epochs", "1", "--widths", "4", "--feature_dim", "4", "--batch_size", "32"]) == 0
    training = json.loads((out / "training.json").read_text())
    assert training["data"]["resolution"] == 8 and training["model_config"]["sample_size"] == 8
    model, info = clf.load_feature_network(out)
    assert info["image_shape"] == [3, 8, 8] and model.image_shape == (3, 8, 8)
    spec = DataSpec(str(rgb_npz[0]), resolution=8, center_crop=True)
    report = evaluate_samples(_images(spec, "test"), spec, seed=0, feature_network=out)
    assert report["feature_network"]["sha256"] == info["sha256"] and report["frechet_distance"]["floor_n"] == 48


def test_train_classifier_refuses_unlabelled_or_single_class_data(rgb_npz, tmp_path, capsys):
    one_class = tmp_path / "one.npz"
    x = np.zeros((20, 3, 8, 8), dtype=np.uint8)
    np.savez(one_class, x_train=x, y_train=np.zeros(20, np.int64), x_test=x, y_test=np.zeros(20, np.int64))
    for dataset, needle in [(rgb_npz[1], "has no labels"), (one_class, "one class only")]:
        with pytest.raises(SystemExit) as exit_info:
            train_main(["--dataset", str(dataset), "--output_dir", str(tmp_path / "out")])
        assert exit_info.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_classifier_takes_rgb_and_non_square_images():
    model = clf.DigitClassifier(sample_size=(16, 8), in_channels=3, num_classes=4, widths=(4, 8), feature_dim=6)
    assert model.image_shape == (3, 16, 8)
    feats, probs = clf.extract(model, torch.rand(5, 3, 16, 8))
    assert feats.shape == (5, 6) and probs.shape == (5, 4)
    with pytest.raises(UserInputError, match=r"\(N, 3, 16, 8\)"):
        clf.extract(model, torch.rand(5, 3, 8, 16))
