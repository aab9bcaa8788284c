"""Reference floors of the sample-quality metrics: what real data scores, and how far degradations move it.

    python bench/metrics_floors.py --data ../shared/data/mnist.npz
    python bench/metrics_floors.py --data digits

Every figure is in the shipped classifier's features (its id and sha256 are printed) against the statistics
of the whole test split; N is the size of the compared set. Frechet distances depend strongly on N, so a
model's figure compares with the floor at the same N. Prints a Markdown table and writes a JSON record to
bench/out/metrics_floors_<data>.json.
"""

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import torch

from hubgen.data import load_dataset
from hubgen.metrics import (
    class_histogram,
    extract,
    feature_network_id,
    feature_statistics,
    frechet_distance,
    load_classifier,
    memorization_report,
    mode_coverage,
    precision_recall_density_coverage,
)
from hubgen.metrics.sample_quality import network_for_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=5)
    args = p.parse_args()

    train, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    network = network_for_size(test.image_shape[-1])
    classifier = load_classifier(network)
    g = torch.Generator().manual_seed(args.seed)
    x_train, x_test = train.images.float() / 255, test.images.float() / 255
    f_train, p_train = extract(classifier, x_train)
    f_test, _ = extract(classifier, x_test)
    ref = feature_statistics(f_test)
    test_hist = class_histogram(test.labels.numpy())

    def fd(features):
        return frechet_distance(*feature_statistics(features), *ref)

    rows = []
    sizes = [n for n in (360, 1000, 2000, 10000) if n <= len(train)] + ([len(train)] if len(train) < 10000 else [])
    for n in sizes:
        prdc = precision_recall_density_coverage(f_test[: min(n, len(test))], f_train[: min(n, len(test))], k=args.k)
        modes = mode_coverage(p_train[:n].argmax(1), test_hist)
        rows.append(
            {
                "set": f"first {n} train images",
                "n": n,
                "fd": fd(f_train[:n]),
                **_prdc(prdc),
                "classes": modes["classes_covered"],
            }
        )
    try:  # an independent held-out split, where the dataset has one (MNIST's last 10k training images)
        valid = load_dataset(args.data, "valid")
        rows.append(
            {"set": "valid split", "n": len(valid), "fd": fd(extract(classifier, valid.images.float() / 255)[0])}
        )
    except ValueError:
        pass
    keep = test.labels != 0
    f_drop, p_drop = extract(classifier, x_test[keep])
    drop_modes = mode_coverage(p_drop.argmax(1), test_hist)
    rows.append(
        {
            "set": "test without class 0",
            "n": int(keep.sum()),
            "fd": fd(f_drop),
            "classes": drop_modes["classes_covered"],
        }
    )
    for sigma in (0.1, 0.2, 0.4):
        noisy = (x_test + sigma * torch.randn(x_test.shape, generator=g)).clamp(0, 1)
        rows.append({"set": f"test + N(0, {sigma}^2) noise", "n": len(test), "fd": fd(extract(classifier, noisy)[0])})
    n_memo = min(1000, len(test))
    memo_test = memorization_report(
        x_test[:n_memo], x_train, x_test[n_memo : 2 * n_memo] if len(test) >= 2 * n_memo else x_test[:n_memo]
    )
    memo_copy = memorization_report(x_train[:n_memo], x_train, x_test[:n_memo])

    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": f"python bench/metrics_floors.py --data {args.data}",
        "feature_network": feature_network_id(network),
        "reference": f"{args.data} test split, {len(test)} images",
        "k": args.k,
        "seed": args.seed,
        "rows": rows,
        "memorization": {
            "held_out_test_images": memo_test["fraction_closer_than_any_test"],
            "copies_of_training_images": memo_copy["fraction_closer_than_any_test"],
            "n": n_memo,
        },
    }
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"metrics_floors_{Path(str(args.data)).stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"features: {record['feature_network']}; reference: {record['reference']}; k={args.k}; seed {args.seed}")
    print("| compared set | N | FD | precision | recall | density | coverage | classes covered |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[c]:.3f}" if c in r else "" for c in ("precision", "recall", "density", "coverage")]
        print(f"| {r['set']} | {r['n']} | {r['fd']:.2f} | " + " | ".join(cells) + f" | {r.get('classes', '')} |")
    m = record["memorization"]
    print(
        f"memorization (N={m['n']}): fraction closer to train than any test image: held-out test images "
        f"{m['held_out_test_images']:.3f}, copies of training images {m['copies_of_training_images']:.3f}"
    )


def _prdc(prdc: dict) -> dict:
    return {key: prdc[key] for key in ("precision", "recall", "density", "coverage")}


if __name__ == "__main__":
    main()
