"""Benchmark: hubgen's flow training throughput against normflows', in alternating runs (A B B A ...).

    taskset -c 0 python bench/flow_throughput_ab.py --data ../shared/data/mnist.npz --groups 3

One run of bench/flow_mnist.py trains one library for `--minutes` (one thread, bf16 autocast, the same architecture
and batch) in its own process; this script alternates them in groups H N N H (hubgen, normflows, normflows,
hubgen), so that a drift of the machine's speed over the minutes (5-9% between minutes on a shared cloud host)
falls on both sides alike. The figure is the ratio of the mean throughputs over all runs; each adjacent H-N pair
gives a ratio too (their spread is the measurement's). The load average is logged before each run: a run that
shared the machine does not count. Pin the script to one core (`taskset -c 0`): its runs inherit the affinity.
Writes `runs.json` in `--out` (each run: library, images/s, steps, test bits/dim of the first
`--eval_num_images` test images) and prints the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ORDER = ("hubgen", "normflows", "normflows", "hubgen")


def _speed(pair: list[dict], library: str) -> float:
    return next(r["images_per_second"] for r in pair if r["library"] == library)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST .npz, e.g. ../shared/data/mnist.npz")
    p.add_argument("--groups", type=int, default=2, help="groups of 4 runs (H N N H)")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget of each run")
    p.add_argument("--mixed_precision", choices=("no", "bf16"), default="bf16")
    p.add_argument("--eval_num_images", type=int, default=1000)
    p.add_argument("--out", default="bench/out/flow-throughput-ab")
    args = p.parse_args()
    if args.groups < 1 or not args.minutes > 0:
        p.error(f"--groups must be >= 1 and --minutes > 0, got {args.groups} and {args.minutes}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    script = Path(__file__).with_name("flow_mnist.py")
    runs = []
    for i, library in enumerate(ORDER * args.groups, start=1):
        folder = out / f"run{i}"
        skip = "--skip_normflows" if library == "hubgen" else "--skip_hubgen"
        cmd = [sys.executable, str(script), "--data", args.data, "--minutes", str(args.minutes), "--threads", "1",
               "--mixed_precision", args.mixed_precision, "--num_samples", "0",
               "--eval_num_images", str(args.eval_num_images), skip, "--out", str(folder)]  # fmt: skip
        load, start = os.getloadavg()[0], time.strftime("%H:%M:%S", time.gmtime())
        with open(out / f"run{i}.log", "w") as log:
            code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            print(f"run {i} ({library}) failed with exit code {code}; see {out / f'run{i}.log'}", file=sys.stderr)
            return code
        record = json.loads((folder / "flow_mnist.json").read_text())[library]
        bpd = record["test_bits_per_dim"]
        runs.append({"run": i, "library": library, "start_utc": start, "load_average_1min_before": load,
                     "steps": record["train"]["steps"], "images_per_second": record["train"]["images_per_second"],
                     "test_bits_per_dim": round(bpd["mean"], 4), "stderr": round(bpd["stderr"], 4)})  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)

    speed = {lib: [r["images_per_second"] for r in runs if r["library"] == lib] for lib in ("hubgen", "normflows")}
    pairs = [runs[k : k + 2] for k in range(0, len(runs), 2)]  # (H, N), (N, H), ...
    pair_ratios = [_speed(pair, "hubgen") / _speed(pair, "normflows") for pair in pairs]
    summary = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch_threads": 1,
        "runs": runs,
        "mean_images_per_second": {lib: round(statistics.mean(v), 1) for lib, v in speed.items()},
        "ratio_of_means": round(statistics.mean(speed["hubgen"]) / statistics.mean(speed["normflows"]), 3),
        "pair_ratios": [round(q, 3) for q in pair_ratios],
        "median_pair_ratio": round(statistics.median(pair_ratios), 3),
    }
    (out / "runs.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("| run | start (UTC) | load before | library | steps | images/s | test bits/dim |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['run']} | {r['start_utc']} | {r['load_average_1min_before']:.2f} | {r['library']} | "
              f"{r['steps']} | {r['images_per_second']} | {r['test_bits_per_dim']} ± {r['stderr']} |")  # fmt: skip
    print(f"ratio of means {summary['ratio_of_means']}; pair ratios {summary['pair_ratios']} "
          f"(median {summary['median_pair_ratio']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
