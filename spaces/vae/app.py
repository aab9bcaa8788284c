"""Gradio Space for a hubgen VAE: sample, draw-and-score, interpolate, latent-space grid.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the
same app runs on Spaces and offline: `HUBGEN_MODEL=./my-vae python app.py`. The UI lives in
`hubgen.vae.demo.build_demo`; this file only picks the model.
"""

import os

from hubgen.vae.demo import build_demo

model = os.environ.get("HUBGEN_MODEL", "hubgen/vae-digits")
demo = build_demo(model)

if __name__ == "__main__":
    demo.launch()
