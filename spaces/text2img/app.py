"""Gradio Space for a hubgen text-to-image model: prompt, negative prompt, guidance scale, sampler, seed.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the same
app runs on Spaces and offline: `HUBGEN_MODEL=./my-text2img python app.py`. The UI lives in
`hubgen.text2img.demo.build_demo`; this file only picks the model.
"""

import os

from hubgen.text2img.demo import build_demo

model = os.environ.get("HUBGEN_MODEL", "hubgen/text2img-mnist")
demo = build_demo(model)

if __name__ == "__main__":
    demo.launch()
