"""PixelCNNPipeline: save/load round trip, the exact likelihood and its map, completion, bad input."""

import numpy as np
import pytest
import torch

from hubgen.pixelcnn.modeling_pixelcnn import PixelCNNModel
from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    model = PixelCNNModel(sample_size=6, in_channels=1, pixel_levels=2, hidden_channels=8, num_layers=2)
    p = PixelCNNPipeline(model=model.eval())
    p.set_progress_bar_config(disable=True)
    return p


def test_save_and_load_give_identical_samples_and_safetensors_only(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    assert list((tmp_path / "m").rglob("*.safetensors")) and not list((tmp_path / "m").rglob("*.bin"))
    again = PixelCNNPipeline.from_pretrained(tmp_path / "m")
    again.set_progress_bar_config(disable=True)
    a = pipe(4, generator=torch.Generator().manual_seed(1), output_type="pt").images
    b = again(4, generator=torch.Generator().manual_seed(1), output_type="pt").images
    assert torch.equal(a, b) and a.shape == (4, 1, 6, 6) and set(a.unique().tolist()) <= {0.0, 1.0}


def test_log_likelihood_is_exact_and_its_map_sums_to_it(pipe):
    images = pipe(3, generator=torch.Generator().manual_seed(2), output_type="pt").images
    scores = pipe.log_likelihood(images)
    levels = images.long()
    expected = -pipe.model.log_prob(levels).double().sum((1, 2, 3))
    torch.testing.assert_close(scores.nll_nats, expected)
    torch.testing.assert_close(scores.log_prob_map.sum((1, 2)), -scores.nll_nats)
    torch.testing.assert_close(scores.bits_per_dim, scores.nll_nats / (36 * np.log(2)))
    assert scores.log_prob_map.shape == (3, 6, 6) and (scores.log_prob_map <= 0).all()


def test_complete_keeps_the_known_half_and_varies_the_rest(pipe):
    image = torch.zeros(1, 1, 6, 6)
    image[:, :, :3, 2:4] = 1.0  # a stroke in the top half
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:3] = True
    out = pipe.complete(image, mask, num_completions=5, generator=torch.Generator().manual_seed(3), output_type="pt")
    assert out.shape == (5, 1, 6, 6) and torch.equal(out[:, :, :3], image[:, :, :3].expand(5, 1, 3, 6))
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: p(0), "batch_size"),
        (lambda p: p(2, temperature=0), "temperature"),
        (lambda p: p(2, generator=[torch.Generator()]), "1 generators in `generator` for 2 images"),
        (lambda p: p(1, output_type="jpg"), "output_type"),
        (lambda p: p.log_likelihood(torch.rand(1, 1, 5, 5)), "shape"),
        (lambda p: p.log_likelihood(torch.full((1, 1, 6, 6), 2.0)), r"\[0, 1\]"),
        (lambda p: p.complete(torch.zeros(1, 1, 6, 6), torch.ones(5, 5, dtype=torch.bool)), "known_mask"),
        (lambda p: p.complete(torch.zeros(1, 1, 6, 6), torch.ones(6, 6, dtype=torch.bool), 0), "num_completions"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(pipe, call, match):
    with pytest.raises(ValueError, match=match):
        call(pipe)
