"""hubgen.data: named datasets, .npz files, image folders, pixel modes and their errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hubgen.data import DataSpec, binarize, dequantize, load_dataset
from hubgen.errors import UserInputError


def test_digits_split_is_fixed_disjoint_and_complete():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.image_shape == (1, 8, 8) and train.levels == 17
    assert set(np.unique(train.images.numpy())) <= {round(k * 255 / 16) for k in range(17)}
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    rows = {tuple(r) for r in train.images.flatten(1).tolist()}
    overlap = sum(tuple(r) in rows for r in test.images.flatten(1).tolist())
    assert overlap < 5  # a handful of digits are pixel-identical in sklearn's set; the split itself is disjoint
    x, y = train[0]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and 0 <= y <= 9


def test_a_batch_of_items_equals_the_items_one_by_one(tmp_path):
    # the DataLoader asks for a batch of indices at once (__getitems__); it must give what __getitem__ gives,
    # with and without labels, and with a transform (which goes item by item)
    rng = np.random.default_rng(1)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (12, 5, 5), dtype=np.uint8), y_train=np.arange(12) % 3,
             x_test=rng.integers(0, 256, (6, 5, 5), dtype=np.uint8))  # fmt: skip
    flipped = load_dataset(DataSpec("digits", resolution=4, random_flip=True), "train")
    for ds in (load_dataset(path, "train"), load_dataset(path, "test"), flipped):
        indices = [5, 0, 3, 3, len(ds) - 1]
        batch = ds.__getitems__(indices)
        assert len(batch) == len(indices)
        for (x, y), i in zip(batch, indices, strict=True):
            x1, y1 = ds[i]
            assert torch.equal(x, x1) and x.dtype == x1.dtype and y == y1 and type(y) is type(y1)
    loader = torch.utils.data.DataLoader(load_dataset(path, "train"), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 1, 5, 5) and y.tolist() == [0, 1, 2, 0]


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8),
        y_train=np.arange(10),
        x_test=rng.integers(0, 256, (4, 6, 6), dtype=np.uint8),
    )
    train, test = load_dataset(path, "train"), load_dataset(str(path), "test")
    assert train.image_shape == (1, 6, 6) and len(test) == 4 and test.labels is None
    assert train.labels.tolist() == list(range(10))
    with pytest.raises(ValueError, match="x_valid"):
        load_dataset(path, "valid")


def test_shared_mnist_npz(mnist_npz):
    test = load_dataset(mnist_npz, "test")
    assert len(test) == 10_000 and test.image_shape == (1, 28, 28) and test.levels == 256
    assert len(load_dataset(mnist_npz, "valid")) == 10_000


def test_image_folder_with_classes(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((5, 5), 40 * i, np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    train = load_dataset(tmp_path, "train")
    assert len(train) == 6 and train.image_shape == (1, 5, 5)
    assert sorted(train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(load_dataset(tmp_path, "test")) == 4


def test_flat_image_folder_is_split_90_10(tmp_path):
    for i in range(20):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    train, test = load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test")
    assert (len(train), len(test)) == (18, 2) and train.labels is None


@pytest.mark.parametrize("name", ["cifar10", "no/such/path.npz"])
def test_unknown_dataset_lists_what_is_accepted(name):
    with pytest.raises(ValueError, match="Accepted: a name .'digits', 'mnist'."):
        load_dataset(name)


def test_bad_files_and_folders_give_clear_errors(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not a .npz"):
        load_dataset(txt)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot read"):
        load_dataset(bad)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(empty_dir)
    empty_npz = tmp_path / "empty.npz"
    np.savez(empty_npz, x_train=np.zeros((0, 4, 4), np.uint8), x_test=np.zeros((0, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        load_dataset(empty_npz)
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=np.zeros((2, 4, 4), np.float32), x_test=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_dataset(floats)
    with pytest.raises(ValueError, match="`split`"):
        load_dataset("digits", "validation")


def test_mnist_by_name_fails_clearly_offline():
    with pytest.raises(ValueError, match=r"\.npz"):
        load_dataset("mnist")


def test_dynamic_binarization_is_bernoulli_of_the_intensity():
    p = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(50_000, 1)
    x = binarize(p, generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(x.mean(0), torch.tensor([0.0, 0.25, 0.5, 1.0]), atol=0.01, rtol=0)
    # dynamic: every use is a fresh draw
    assert not torch.equal(binarize(p[:1000, 1:3]), binarize(p[:1000, 1:3]))


def test_dequantization_stays_in_its_bin():
    levels = 17
    k = torch.arange(levels).float()
    x = dequantize((k / (levels - 1)).repeat(1000, 1), levels, generator=torch.Generator().manual_seed(0))
    assert torch.all(x >= k / levels) and torch.all(x < (k + 1) / levels)
    torch.testing.assert_close(x.mean(0), (k + 0.5) / levels, atol=0.01, rtol=0)


# -- your own images: image folders with metadata, save_to_disk, parquet, Hub ids (issue 15) ---------------------


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _rgb_folder(root, n=12, size=8):
    """n RGB images size x size with a metadata.jsonl (captions, labels); returns the pixels (n, 3, H, W)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    rows = []
    for i in range(n):
        _png(root / f"{i:03d}.png", pixels[i])
        rows.append({"file_name": f"{i:03d}.png", "text": f"picture number {i}", "label": i % 3})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())


def _contents(ds):
    return ds.image_shape, ds.take(len(ds)), ds.captions, ds.labels.tolist()


def _same_data(ds, expected):
    shape, images, captions, labels = expected
    assert ds.image_shape == shape and torch.equal(ds.take(len(ds)), images)
    assert ds.captions == captions and ds.labels.tolist() == labels


def test_image_folder_save_to_disk_and_parquet_load_the_same_images(tmp_path):
    import datasets

    pixels = _rgb_folder(tmp_path / "folder")
    train, test = load_dataset(tmp_path / "folder", "train"), load_dataset(tmp_path / "folder", "test")
    assert train.image_shape == (3, 8, 8) and train.levels == 256 and (len(train), len(test)) == (11, 1)
    assert "90/10" in train.extra["split"] and train.extra["conversions"] == []
    assert not hasattr(train, "images")  # decoded per item, never held
    rows = [int(c.split()[-1]) for c in train.captions + test.captions]  # the file each image came from
    assert sorted(rows) == list(range(12)) and train.labels.tolist() == [r % 3 for r in rows[:11]]
    assert torch.equal(torch.cat([train.take(11), test.take(1)]), pixels[rows])
    x, y = train[0]
    assert x.dtype == torch.float32 and torch.equal(x, pixels[rows[0]].float() / 255) and y == rows[0] % 3
    # the same data saved with save_to_disk and as parquet (image bytes embedded); the folder is gone
    datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "folder")).save_to_disk(tmp_path / "saved")
    datasets.load_from_disk(str(tmp_path / "saved"))["train"].to_parquet(tmp_path / "data.parquet")
    expected = {"train": _contents(train), "test": _contents(test)}
    (tmp_path / "folder").rename(tmp_path / "moved")
    for copy in (tmp_path / "saved", tmp_path / "data.parquet"):
        _same_data(load_dataset(copy, "train"), expected["train"])
        _same_data(load_dataset(str(copy), "test"), expected["test"])
    (tmp_path / "parquets").mkdir()
    (tmp_path / "data.parquet").rename(tmp_path / "parquets" / "train.parquet")
    _same_data(load_dataset(tmp_path / "parquets", "train"), expected["train"])


def test_metadata_csv_string_labels_and_train_test_subfolders(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("test", 2)):
        lines = ["file_name,caption,kind"]
        for i in range(n):
            _png(tmp_path / split / f"{i}.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
            lines.append(f"{i}.png,a {split} image,{'cat' if i % 2 else 'dog'}")
        (tmp_path / split / "metadata.csv").write_text("\n".join(lines) + "\n")
    spec = DataSpec(str(tmp_path), caption_column="caption", label_column="kind")
    train, test = spec.load("train"), spec.load("test")
    assert (len(train), len(test)) == (4, 2) and "split" not in train.extra  # the data's own splits
    assert train.captions == ["a train image"] * 4 and train.extra["classes"] == ["cat", "dog"]
    assert train.labels.tolist() == [1, 0, 1, 0] and test.labels.tolist() == [1, 0]
    assert train.spec is spec and train.extra["columns"] == {"image": "image", "caption": "caption", "label": "kind"}
    with pytest.raises(ValueError, match="no validation split"):
        spec.load("valid")


def test_mixed_sizes_and_a_grey_image_among_rgb_ones(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(4):
        _png(tmp_path / "train" / f"rgb{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    _png(tmp_path / "train" / "wide.png", rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    _png(tmp_path / "train" / "grey.png", np.full((8, 8), 77, np.uint8))
    _png(tmp_path / "test" / "t.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    train = load_dataset(tmp_path, "train")
    assert train.image_shape == (3, 8, 8) and len(train) == 6
    assert train.extra["conversions"] == ["L -> RGB: 1 images", "10x6 -> 8x8 (the most common size): 1 images"]
    images = train.take(6)
    assert images.shape == (6, 3, 8, 8)
    assert any(torch.all(im == 77) for im in images)  # the grey PNG, repeated in R, G and B
    assert load_dataset(tmp_path, "test").image_shape == (3, 8, 8)


def test_rgba_and_palette_images_are_converted_to_rgb(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 20, 30), 0  # fully transparent: alpha is dropped, not composited
    _png(tmp_path / "a.png", rgba, "RGBA")
    palette = Image.new("P", (4, 4))
    palette.putpalette([200, 100, 50] + [0] * 765)
    palette.save(tmp_path / "b.png")
    _png(tmp_path / "c.png", np.full((4, 4, 3), 5, np.uint8))
    both = torch.cat([load_dataset(tmp_path, s).take(3) for s in ("train", "test")])
    assert {tuple(im[:, 0, 0].tolist()) for im in both} == {(10, 20, 30), (200, 100, 50), (5, 5, 5)}
    conversions = (
        load_dataset(tmp_path, "train").extra["conversions"] + load_dataset(tmp_path, "test").extra["conversions"]
    )
    assert sorted(conversions) == ["P -> RGB: 1 images", "RGBA -> RGB: 1 images"]


def test_resolution_center_crop_random_crop_and_flip(tmp_path):
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)  # H 8, W 12
    for split in ("train", "test"):
        _png(tmp_path / split / "wide.png", wide)
    resized = Image.fromarray(wide).resize((6, 4), Image.BILINEAR)  # the shorter side 8 -> 4 (diffusers' Resize)
    crops = [torch.from_numpy(np.asarray(resized.crop((j, 0, j + 4, 4))).transpose(2, 0, 1).copy()) for j in range(3)]
    center = load_dataset(DataSpec(str(tmp_path), resolution=4, center_crop=True), "train")
    assert center.image_shape == (3, 4, 4) and torch.equal(center[0][0], crops[1].float() / 255)
    train = load_dataset(DataSpec(str(tmp_path), resolution=4, random_flip=True, seed=5), "train")
    assert torch.equal(train.take(1)[0], crops[1])  # take: deterministic, center crop, no flip
    assert torch.equal(load_dataset(DataSpec(str(tmp_path), resolution=4), "test")[0][0], crops[1].float() / 255)
    seen = []
    for epoch in range(12):
        train.set_epoch(epoch)
        x = (train[0][0] * 255).round().to(torch.uint8)
        assert torch.equal(x, (train[0][0] * 255).round().to(torch.uint8))  # the same draw for (seed, epoch, i)
        seen.append(
            next((j, f) for j in range(3) for f in (0, 1) if torch.equal(x, crops[j].flip(-1) if f else crops[j]))
        )
    assert {j for j, _ in seen} == {0, 1, 2} and {f for _, f in seen} == {0, 1}  # random crops, flips both ways
    npz = tmp_path / "rgb.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (3, 3, 6, 6), dtype=np.uint8), x_test=np.zeros((1, 3, 6, 6), np.uint8))
    small = load_dataset(DataSpec(str(npz), resolution=4, center_crop=True), "train")
    assert small.image_shape == (3, 4, 4) and small[0][0].shape == (3, 4, 4) and small.take(2).shape == (2, 3, 4, 4)


def test_max_train_samples_shuffles_with_the_seed_as_diffusers(tmp_path):
    import datasets

    _rgb_folder(tmp_path / "train")
    _rgb_folder(tmp_path / "test", n=2)
    train = load_dataset(DataSpec(str(tmp_path), max_train_samples=5, seed=3), "train")
    expected = datasets.load_dataset("imagefolder", data_dir=str(tmp_path))["train"].shuffle(seed=3).select(range(5))
    assert len(train) == 5 and train.captions == list(expected["text"])
    assert len(load_dataset(DataSpec(str(tmp_path), max_train_samples=5), "test")) == 2
    digits = load_dataset(DataSpec("digits", max_train_samples=100, seed=1), "train")
    assert len(digits) == 100 and len(load_dataset(DataSpec("digits", max_train_samples=100), "test")) == 360


def test_hub_dataset_id_with_config_and_revision(monkeypatch):
    import datasets

    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)) for _ in range(3)]
    hub = datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict({"img": images, "label": [0, 1, 0]}).cast_column("img", datasets.Image())
            for s in ("train", "test")
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or hub)
    test = load_dataset(DataSpec("someone/pictures", config="small", revision="v1"), "test")
    assert calls == [(("someone/pictures",), {"name": "small", "revision": "v1"})]
    assert (
        test.image_shape == (3, 4, 4) and test.labels.tolist() == [0, 1, 0] and test.extra["columns"]["image"] == "img"
    )
    assert torch.equal(test.take([1])[0], torch.from_numpy(np.asarray(images[1]).transpose(2, 0, 1).copy()))


def test_hub_dataset_id_offline_is_a_clear_error():
    with pytest.raises(UserInputError, match="Could not load the Hub dataset 'someone/no-such-data'.*Hub or its cache"):
        load_dataset("someone/no-such-data", "train")


def test_bad_data_gives_one_clear_error_each(tmp_path):
    _rgb_folder(tmp_path / "ok", n=4)
    with pytest.raises(
        UserInputError, match=r"`--caption_column` 'caption' is not a column .* \['image', 'text', 'label'\]"
    ):
        load_dataset(DataSpec(str(tmp_path / "ok"), caption_column="caption"))
    with pytest.raises(UserInputError, match=r"`--image_column` 'picture' is not a column"):
        load_dataset(DataSpec(str(tmp_path / "ok"), image_column="picture"))
    with pytest.raises(UserInputError, match=r"`--image_column` 'text' .* holds .*string.*, not images"):
        load_dataset(DataSpec(str(tmp_path / "ok"), image_column="text"))
    with pytest.raises(UserInputError, match=r"`image_column` 'image' applies to data with columns"):
        load_dataset(DataSpec("digits", image_column="image"))
    with pytest.raises(UserInputError, match=r"`dataset_config` applies to Hub dataset ids only"):
        load_dataset(DataSpec(str(tmp_path / "ok"), config="small"))
    # an empty caption column
    empty = tmp_path / "empty_captions"
    _rgb_folder(empty, n=4)
    rows = [json.loads(line) for line in (empty / "metadata.jsonl").read_text().splitlines()]
    (empty / "metadata.jsonl").write_text("".join(json.dumps({**r, "text": ""}) + "\n" for r in rows))
    with pytest.raises(UserInputError, match=r"`--caption_column` 'text' .* is empty: none of its 3 rows"):
        load_dataset(DataSpec(str(empty), caption_column="text"))
    assert load_dataset(empty).captions is None  # not asked for: no captions
    # zero images; an unreadable image
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no pictures here")
    with pytest.raises(UserInputError, match="holds no images"):
        load_dataset(tmp_path / "none")
    bad = tmp_path / "bad"
    _rgb_folder(bad, n=3)
    (bad / "001.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match=r"Image '.*001\.png' .* cannot be read as an image"):
        load_dataset(bad)
    import datasets

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [], "text": []}, features=features).to_parquet(tmp_path / "zero.parquet")
    with pytest.raises(UserInputError, match=r"is empty: the parquet file has no rows"):
        load_dataset(tmp_path / "zero.parquet")


def test_data_spec_json_round_trip_and_checks():
    spec = DataSpec("user/name", config="c", revision="r", image_column="img", caption_column="text",
                    label_column="y", resolution=32, center_crop=True, random_flip=True, max_train_samples=10,
                    seed=4)  # fmt: skip
    assert DataSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec and str(spec) == "user/name"
    with pytest.raises(UserInputError, match="Not a data record"):
        DataSpec.from_json({"dataset": "digits", "colour": True})
    with pytest.raises(UserInputError, match="`resolution` must be a whole number >= 1"):
        DataSpec("digits", resolution=0)


def test_train_vae_on_an_rgb_folder_records_the_data_spec(tmp_path, capsys):
    from hubgen.cli import main
    from hubgen.model_folder import recorded_dataset

    _rgb_folder(tmp_path / "rgb", n=20)
    out = tmp_path / "out"
    common = ["--output_dir", str(out), "--latent_dim", "2", "--hidden_dims", "16", "--eval_k", "2",
              "--eval_num_images", "2", "--eval_num_samples", "0", "--report_to", "none", "--train_batch_size", "4",
              "--max_train_steps", "2", "--pixel_mode", "continuous"]  # fmt: skip
    assert main(["train", "vae", "--dataset", str(tmp_path / "rgb"), "--image_column", "picture", *common]) == 2
    assert "`--image_column` 'picture' is not a column" in capsys.readouterr().err
    argv = ["train", "vae", "--dataset", str(tmp_path / "rgb"), "--resolution", "8", "--random_flip",
            "--caption_column", "text", "--max_train_samples", "16", *common]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((out / "hubgen_training.json").read_text())
    spec = DataSpec(str(tmp_path / "rgb"), caption_column="text", resolution=8, random_flip=True, max_train_samples=16)
    assert info["data"] == spec.to_json() and info["dataset"] == str(tmp_path / "rgb")
    assert info["image_shape"] == [3, 8, 8] and info["channels"] == 3 and info["data_conversions"] == []
    assert info["num_train_images"] == 16
    assert recorded_dataset(out) == (spec, info)
    assert recorded_dataset(out, "elsewhere")[0] == DataSpec("elsewhere", caption_column="text", resolution=8,
                                                             random_flip=True, max_train_samples=16)  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["split"] == "test" and results["num_images"] == 2 and results["dataset"] == str(tmp_path / "rgb")
    assert main(["eval", str(out), "--k", "2", "--num_images", "all", "--num_samples", "0"]) == 0  # the recorded spec
    assert json.loads((out / "eval_results.json").read_text())["num_images"] == 2  # the 90/10 test split of 20 images
