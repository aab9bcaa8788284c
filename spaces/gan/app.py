"""Gradio Space for a hubgen GAN: sample (with the truncation trick), interpolate, nearest training images.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the
same app runs on Spaces and offline: `HUBGEN_MODEL=./my-gan python app.py`. The training set for the
nearest-neighbour tab is HUBGEN_DATASET if set (a name such as `digits`, or a path), else the one recorded
in the model's hubgen_training.json. The UI lives in `hubgen.gan.demo.build_demo`; this file only picks
the model and the dataset.
"""

import os

from hubgen.gan.demo import build_demo

model = os.environ.get("HUBGEN_MODEL", "hubgen/gan-mnist")
dataset = os.environ.get("HUBGEN_DATASET") or None
demo = build_demo(model, dataset=dataset)

if __name__ == "__main__":
    demo.launch()
