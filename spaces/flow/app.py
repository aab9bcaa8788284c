"""Gradio Space for a hubgen flow: sample with a temperature, score a drawing against the test set, round trip.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the same app
runs on Spaces and offline: `HUBGEN_MODEL=./my-flow python app.py`. The test set behind the out-of-distribution
meter and the round trip is HUBGEN_DATASET if set (a name such as `digits`, or a path), else the one recorded
in the model's hubgen_training.json. The UI lives in `hubgen.flow.demo.build_demo`; this file only picks the
model and the dataset.
"""

import os

from hubgen.flow.demo import build_demo

model = os.environ.get("HUBGEN_MODEL", "hubgen/flow-mnist")
dataset = os.environ.get("HUBGEN_DATASET") or None
demo = build_demo(model, dataset=dataset)

if __name__ == "__main__":
    demo.launch()
