"""Coloured MNIST (bench/colored_mnist.py) and its judge (bench/colored_mnist_judge.py), on synthetic digits: ten
3x5 block glyphs drawn into 28x28 images, so the tests never need MNIST."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hubgen.errors import UserInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import colored_mnist as cm  # noqa: E402
import colored_mnist_judge as cj  # noqa: E402

COLUMNS = {"file_name", "text", "label", "digit", "fg", "bg"}
GLYPHS = ("111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
          "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111")  # fmt: skip

# One torch thread for the module, restored afterwards: the judge's CLI sets the global thread count
# (`--threads`), and a later module's bit-exact comparisons with a subprocess need the default back.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def glyph(d: int, dy: int = 0, dx: int = 0) -> np.ndarray:
    """Digit d as a 28x28 uint8 image: a 3x5 block glyph, cells of 4x4 px, box-blurred (soft edges)."""
    cells = np.array([int(c) for c in GLYPHS[d]], dtype=np.float64).reshape(5, 3)
    x = np.zeros((28, 28))
    x[4 + dy : 24 + dy, 8 + dx : 20 + dx] = np.kron(cells, np.ones((4, 4)))
    blurred = sum(np.roll(np.roll(x, i, 0), j, 1) for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9
    return np.round(255 * np.maximum(x, blurred)).astype(np.uint8)  # core 255, edges in between


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory) -> Path:
    """A tiny .npz with the keys of mnist.npz: 200 train and 60 test glyphs, shifted by up to 2 px."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 200), ("test", 60)):
        y = np.arange(n) % 10
        shifts = rng.integers(-2, 3, (n, 2))
        arrays[f"x_{split}"] = np.stack([glyph(d, *s) for d, s in zip(y, shifts, strict=True)])
        arrays[f"y_{split}"] = y.astype(np.uint8)
    path = tmp_path_factory.mktemp("mnist") / "mnist_like.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def dataset(mnist_like, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cm") / "colored"
    cm.write_dataset(mnist_like, out, seed=0)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_two_runs_write_identical_bytes_and_the_seed_matters(mnist_like, dataset, tmp_path):
    first = _digest(dataset)
    again = tmp_path / "again"
    cm.write_dataset(mnist_like, again, seed=0, command="same")
    other = tmp_path / "seed1"
    cm.write_dataset(mnist_like, other, seed=1, command="same")
    second = _digest(again)
    # the README and spec record the command (with the output path); everything else is byte-identical
    assert {k for k in first if first[k] != second[k]} == {"README.md", "colored_mnist.json"}
    assert len(first) == 200 + 60 + 2 + 3  # the images, two metadata.jsonl, three files at the root
    again2 = tmp_path / "again2"
    cm.write_dataset(mnist_like, again2, seed=0, command="same")
    assert _digest(again2) == second
    assert cm.read_metadata(other, "train") != cm.read_metadata(again, "train")
    with pytest.raises(FileExistsError):
        cm.write_dataset(mnist_like, again, seed=0)


def test_palettes_are_well_separated():
    fg = np.array([c for _, c in cm.FOREGROUNDS], dtype=np.float64)
    bg = np.array([c for _, c in cm.BACKGROUNDS], dtype=np.float64)
    assert len(fg) >= 6 and len(bg) >= 3
    names = [n for n, _ in cm.FOREGROUNDS + cm.BACKGROUNDS]
    assert len(set(names)) == len(names)

    def min_distance(a, b, same):
        d = np.linalg.norm(a[:, None] - b[None], axis=2)
        return d[~np.eye(len(a), dtype=bool)].min() if same else d.min()

    assert min_distance(fg, fg, True) >= 250  # 0..255 units; 255 for adjacent cube corners
    assert min_distance(bg, bg, True) >= 200
    assert min_distance(fg, bg, False) >= 200  # every stroke has contrast on every background
    # any blend bg + t (fg - bg) with t > 1/2 is nearest to fg: the judge's stroke mean (t >= 0.75) names fg
    for i, f in enumerate(fg):
        for b in bg:
            for t in np.linspace(0.51, 1.0, 50):
                assert np.linalg.norm(fg - (b + t * (f - b)), axis=1).argmin() == i


def test_heldout_pairs_absent_from_train_and_present_in_test(dataset):
    heldout = cm.read_heldout(dataset)
    assert len(heldout) == 10 and sorted(d for d, _ in heldout) == list(range(10))  # one colour per digit
    names = [n for n, _ in cm.FOREGROUNDS]
    pair = lambda row: (row["digit"], names.index(row["fg"]))  # noqa: E731
    assert not {pair(r) for r in cm.read_metadata(dataset, "train")} & heldout
    assert {pair(r) for r in cm.read_metadata(dataset, "test")} & heldout
    spec = json.loads((dataset / "colored_mnist.json").read_text())
    assert spec["heldout_pairs"] == json.loads((dataset / "heldout.json").read_text())["heldout_pairs"]
    readme = (dataset / "README.md").read_text()
    assert all(f"| {d} | {names[f]} |" in readme for d, f in heldout)
    # the rule itself, on many draws: training draws avoid exactly the held-out pairs, test draws cover all 60
    held = cm.heldout_colours(0)
    y = np.arange(30000) % 10
    fg, bg, _ = cm.draw_colours(y, held, np.random.default_rng(0))
    assert set(zip(y, fg, strict=True)) == {(d, f) for d in range(10) for f in range(6)} - heldout
    assert set(bg) == {0, 1, 2}
    fg, _, _ = cm.draw_colours(y, None, np.random.default_rng(0))
    assert len(set(zip(y, fg, strict=True))) == 60
    assert all(1 <= np.sum(held == c) <= 2 for c in range(6))  # every colour held out for 1 or 2 digits


def test_metadata_columns_captions_and_pixels(dataset, mnist_like):
    source = np.load(mnist_like)
    fg_rgb, bg_rgb = dict(cm.FOREGROUNDS), dict(cm.BACKGROUNDS)
    for split in ("train", "test"):
        rows = cm.read_metadata(dataset, split)
        assert len(rows) == len(source[f"x_{split}"])
        for k, row in enumerate(rows):
            assert set(row) == COLUMNS and row["label"] == row["digit"] == source[f"y_{split}"][k]
            text = row["text"]
            assert row["fg"] in text and row["bg"] in text
            assert cm.DIGIT_NAMES[row["digit"]] in text.split() or str(row["digit"]) in text.split()
            image = np.asarray(Image.open(dataset / split / row["file_name"]))
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
            t = np.pad(source[f"x_{split}"][k], 2).astype(np.float64)[..., None] / 255
            f, b = np.array(fg_rgb[row["fg"]], dtype=np.float64), np.array(bg_rgb[row["bg"]], dtype=np.float64)
            np.testing.assert_allclose(image, b + (f - b) * t, atol=0.5)  # pixel = bg + (fg - bg) t / 255, rounded
    fg_names, bg_names = [n for n, _ in cm.FOREGROUNDS], [n for n, _ in cm.BACKGROUNDS]
    used = set()
    for r in cm.read_metadata(dataset, "train"):
        f, b = fg_names.index(r["fg"]), bg_names.index(r["bg"])
        used |= {t for t in range(len(cm.TEMPLATES)) if cm.caption(t, r["digit"], f, b) == r["text"]}
    assert used == set(range(len(cm.TEMPLATES))) and len(used) >= 4  # several phrasings, all of them used


def _coloured(d: int, f: int, b: int) -> np.ndarray:
    """A glyph coloured like the writer does, as (3, 32, 32) in [0, 1]."""
    return cm.colorize(glyph(d)[None], np.array([f]), np.array([b]))[0].transpose(2, 0, 1) / 255


def test_colour_rule_on_synthetic_images(dataset):
    pairs = [(f, b) for f in range(len(cm.FOREGROUNDS)) for b in range(len(cm.BACKGROUNDS))]
    x = np.stack([_coloured(i % 10, f, b) for i, (f, b) in enumerate(pairs)])  # (18, 3, 32, 32)
    want_fg, want_bg = np.array(pairs).T
    fg, bg = cj.colours(x)
    assert (fg == want_fg).all() and (bg == want_bg).all()
    # noise, a few stray pixels of another colour, a faded stroke: still named right
    rng = np.random.default_rng(0)
    noisy = np.clip(x + rng.normal(0, 0.08, x.shape), 0, 1)
    noisy[:, :, rng.integers(0, 32, 5), rng.integers(0, 32, 5)] = rng.random((len(x), 3, 5))
    background = np.array([c for _, c in cm.BACKGROUNDS], dtype=np.float64)[want_bg][:, :, None, None] / 255
    faded = background + 0.7 * (x - background)
    for images in (noisy, faded, torch.from_numpy(noisy).float()):
        fg, bg = cj.colours(images)
        assert (fg == want_fg).all() and (bg == want_bg).all()
    # no stroke: no foreground (never counted correct)
    blank = np.broadcast_to(background, x.shape)
    assert (cj.colours(blank)[0] == -1).all()
    # the real coloured images of the dataset: every colour named right
    images, _, fg_true, bg_true = cj.load_split(dataset, "test")
    fg, bg = cj.colours(images.float() / 255)
    assert (fg == fg_true).all() and (bg == bg_true).all()
    with pytest.raises(UserInputError, match="images"):
        cj.colours(np.zeros((2, 1, 32, 32)))


class GlyphClassifier:
    """A stand-in digit classifier: logits = minus the distance of the image's contrast map to each glyph."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        contrast = (x - x[:, :, :1, :1]).norm(dim=1)  # (B, 32, 32)
        contrast = contrast / contrast.amax((1, 2), keepdim=True).clamp_min(1e-6)
        glyphs = torch.from_numpy(np.stack([np.pad(glyph(d), 2) for d in range(10)]) / 255).float()
        return -(contrast[:, None] - glyphs[None]).flatten(2).norm(dim=2)  # (B, 10)


def test_judge_and_score():
    judge = cj.Judge(GlyphClassifier())
    requests = [(d, d % 6, d % 3) for d in range(10)]
    x = torch.from_numpy(np.stack([_coloured(*r) for r in requests])).float()
    digit, fg, bg = judge.judge(x)
    assert digit.tolist() == list(range(10)) and fg.tolist() == [d % 6 for d in range(10)]
    want = np.array(requests).T
    assert judge.score(x, want) == {"all_correct": 1.0, "digit": 1.0, "fg": 1.0, "bg": 1.0, "n": 10}
    wrong = want.copy()
    wrong[1, :4] = (wrong[1, :4] + 1) % 6  # 4 wrong foregrounds
    wrong[2, 2:5] = (wrong[2, 2:5] + 1) % 3  # 3 wrong backgrounds, 2 of them on the same images
    assert judge.score(x, wrong) == {"all_correct": 0.5, "digit": 1.0, "fg": 0.6, "bg": 0.7, "n": 10}
    names = ([cm.FOREGROUNDS[f][0] for f in want[1]], [cm.BACKGROUNDS[b][0] for b in want[2]])
    assert judge.score(x, (want[0], *names))["all_correct"] == 1.0
    with pytest.raises(UserInputError, match="purple"):
        judge.score(x, (want[0], ["purple"] * 10, want[2]))


def test_train_judge_saves_safetensors_and_is_deterministic(dataset, tmp_path):
    kwargs = dict(epochs=1, batch_size=50, widths=(4, 8, 8), feature_dim=8, limit=150)
    record = cj.train_judge(dataset, tmp_path / "a", **kwargs)
    assert record["steps"] == 3 and record["recolour"]
    assert cj.train_judge(dataset, tmp_path / "b", **kwargs)["weights_sha256"] == record["weights_sha256"]
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"config.json", "diffusion_pytorch_model.safetensors", "judge.json"}
    result = cj.evaluate_judge(cj.load_judge(tmp_path / "a"), dataset)
    assert result["n"] == 60 and result["all"]["fg"] == 1.0 and result["all"]["bg"] == 1.0
    assert result["training_pairs"]["n"] + result.get("heldout_pairs", {"n": 0})["n"] == 60


def test_random_recolour_is_a_symmetry_of_the_palette():
    x = torch.from_numpy(np.stack([_coloured(3, f, b) for f in range(6) for b in range(3)])).float()
    y = cj.random_recolour(x, torch.Generator().manual_seed(0))
    corners = {(i >> 2 & 1, i >> 1 & 1, i & 1) for i in range(8)}
    grey = 128 / 255
    for before, after in zip(x, y, strict=True):
        stroke, background = after[:, 16, 16], after[:, 0, 0]  # (16, 16) lies on the glyph of 3
        assert tuple(stroke.round().int().tolist()) in corners and torch.allclose(stroke, stroke.round())
        if torch.allclose(before[:, 0, 0], torch.tensor(grey)):  # grey stays grey (or its mirror 1 - grey)
            assert all(min(abs(v - grey), abs(v - 1 + grey)) < 1e-6 for v in background.tolist())
        else:
            assert tuple(background.int().tolist()) in corners and torch.allclose(background, background.round())
        # the blend survives: the contrast map (distance from the background) is unchanged
        torch.testing.assert_close((after - after[:, :1, :1]).norm(dim=0), (before - before[:, :1, :1]).norm(dim=0))
    assert not torch.equal(x, y)


class FakeTextToImage:
    """Renders the requested glyph in the requested colours (or always red with `red=True`): a stand-in for a
    trained Text2ImagePipeline."""

    def __init__(self, red: bool = False):
        self.red = red
        self.unet = type("U", (), {"config": type("C", (), {"in_channels": 3, "sample_size": 32})()})()
        self.lookup = {cm.caption(t, d, f, b): (d, f, b) for d in range(10) for f in range(6) for b in range(3)
                       for t in range(len(cm.TEMPLATES))}  # fmt: skip

    def __call__(self, prompts, guidance_scale, num_inference_steps, sampler, generator, output_type):
        assert output_type == "pt" and isinstance(generator, torch.Generator)
        images = []
        for p in prompts:
            d, f, b = self.lookup[p]
            images.append(_coloured(d, 0 if self.red else f, b))
        return type("Out", (), {"images": torch.from_numpy(np.stack(images)).float()})()


def test_prompt_sets_and_score_text2img(dataset):
    heldout = cm.read_heldout(dataset)
    train, held = cj.prompt_set(heldout, "train", 100), cj.prompt_set(heldout, "heldout", 100)
    assert not {(d, f) for d, f, _, _ in train} & heldout and {(d, f) for d, f, _, _ in held} == heldout
    assert np.bincount([d for d, *_ in train]).tolist() == [10] * 10
    assert len({(d, f) for d, f, _, _ in train}) == 50 and {b for *_, b, _ in train} == {0, 1, 2}
    judge = cj.Judge(GlyphClassifier())
    result = cj.score_text2img(FakeTextToImage(), judge, heldout, n=30, batch_size=16)
    for which in ("train", "heldout"):
        r = result[which]
        assert (r["all_correct"], r["n"], len(r["samples"])) == (1.0, 30, 30)
        assert result["images"][which].shape == (30, 3, 32, 32)
    result = cj.score_text2img(FakeTextToImage(red=True), judge, heldout, n=30)
    for which, requests in (("train", train[:30]), ("heldout", held[:30])):
        share_red = np.mean([f == 0 for _, f, _, _ in requests])
        assert result[which]["fg"] == pytest.approx(share_red) and result[which]["digit"] == 1.0
        assert result[which]["all_correct"] == pytest.approx(share_red)
    grey = FakeTextToImage()
    grey.unet.config.in_channels = 1
    with pytest.raises(UserInputError, match="3 x 32"):
        cj.score_text2img(grey, judge, heldout, n=10)


def test_score_text2img_command_on_a_saved_pipeline(dataset, tmp_path):
    """The command end to end on an untrained 32 px RGB text-to-image model folder and a small judge."""
    from diffusers import DDPMScheduler

    from hubgen.metrics.classifier import DigitClassifier
    from hubgen.model_folder import save_pipeline
    from hubgen.text2img import captions as cap
    from hubgen.text2img.modeling_text2img import build_text_encoder, build_unet, make_pipeline

    tokenizer = cap.build_tokenizer(16)
    torch.manual_seed(0)
    text_encoder = build_text_encoder(len(tokenizer), hidden_size=16, layers=1, heads=2)
    unet = build_unet(32, 3, 16, (8, 16), attention_heads=2)
    save_pipeline(make_pipeline(unet.eval(), text_encoder.eval(), tokenizer, DDPMScheduler()), tmp_path / "t2i")
    cj.train_judge(dataset, tmp_path / "judge", epochs=1, batch_size=50, widths=(4, 8, 8), feature_dim=8, limit=50)
    output = tmp_path / "score.json"
    argv = ["score-text2img", str(tmp_path / "t2i"), "--data", str(dataset), "--judge", str(tmp_path / "judge"),
            "--n", "10", "--steps", "2", "--threads", "1", "--output", str(output)]  # fmt: skip
    assert cj.main(argv) == 0
    record = json.loads(output.read_text())
    assert (record["n"], record["guidance"], record["sampler"]) == (10, 3.0, "dpmsolver++")
    for which in ("train", "heldout"):
        assert set(record[which]) >= {"all_correct", "digit", "fg", "bg", "samples", "unknown_words"}
        assert 0 <= record[which]["all_correct"] <= min(record[which][k] for k in ("digit", "fg", "bg"))
        assert (tmp_path / f"score_{which}.png").is_file()
    assert "on" in record["train"]["unknown_words"]  # the digit-template tokenizer has no colour words
    with pytest.raises(SystemExit) as exit_info:  # --data is not a dataset folder
        cj.main([*argv[:3], str(tmp_path), *argv[4:]])
    assert exit_info.value.code == 2
    grey_judge = tmp_path / "grey_judge"
    DigitClassifier(sample_size=32, in_channels=1, widths=(4,)).save_pretrained(grey_judge)
    assert cj.main([*argv[:5], str(grey_judge), *argv[6:]]) == 2  # a judge for grey images: UserInputError


def test_npz_copy_matches_the_pngs_and_loads_as_rgb(mnist_like, dataset, tmp_path):
    from hubgen.data import load_dataset

    cm.write_dataset(mnist_like, tmp_path / "a", seed=0, npz=tmp_path / "a.npz")
    cm.write_dataset(mnist_like, tmp_path / "b", seed=0, npz=tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    test = load_dataset(tmp_path / "a.npz", "test")
    assert test.image_shape == (3, 32, 32) and len(test) == 60
    images, digit, _, _ = cj.load_split(dataset, "test")
    assert torch.equal(test.take(60), images) and test.labels.tolist() == digit.tolist()
