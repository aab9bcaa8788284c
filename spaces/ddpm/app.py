"""Gradio Space for a hubgen DDPM: sample with DDPM, DDIM or DPM-Solver++ and watch the denoising trajectory.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the
same app runs on Spaces and offline: `HUBGEN_MODEL=./my-ddpm python app.py`. The UI lives in
`hubgen.ddpm.demo.build_demo`; this file only picks the model.
"""

import os

from hubgen.ddpm.demo import build_demo

model = os.environ.get("HUBGEN_MODEL", "hubgen/ddpm-digits")
demo = build_demo(model)

if __name__ == "__main__":
    demo.launch()
