"""The trivial baseline a binarized-likelihood figure must beat: independent per-pixel Bernoullis.

    python bench/bernoulli_baseline.py --data digits
    python bench/bernoulli_baseline.py --data ../shared/data/mnist.npz

p_j = mean training intensity of pixel j (clamped to [1e-4, 1 - 1e-4]); each test image is dynamically
binarized once from seed 0, as in `hubgen eval`; reported: the exact NLL in nats per image (mean ± s.e.).
"""

import argparse
import math

import torch

from hubgen.data import binarize, load_dataset
from hubgen.vae.losses import bernoulli_log_likelihood


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    probs = (train.images.double() / 255).mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)  # (1, C, H, W)
    x = binarize(test.images.double() / 255, generator=torch.Generator().manual_seed(args.seed))
    nll = -bernoulli_log_likelihood(x, torch.logit(probs).expand_as(x))
    print(
        f"{args.data}: per-pixel Bernoulli NLL on test (N={len(x)}, binarization seed {args.seed}): "
        f"{nll.mean():.2f} ± {nll.std() / math.sqrt(len(nll)):.2f} nats"
    )


if __name__ == "__main__":
    main()
