"""hubgen.data: named datasets, .npz files, image folders, pixel modes and their errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from hubgen.data import binarize, dequantize, load_dataset


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
