"""Gradio Space for one hubgen model, of any family.

The model comes from the environment variable HUBGEN_MODEL (a Hub repo id or a local folder), so the same
app runs on Spaces and offline: `HUBGEN_MODEL=./models/vae-digits python app.py` (after `hubgen quickstart`,
which writes ./models); unset, the page says what to set. Its family (found through
hubgen's registry from the model's model_index.json) builds the UI; this file only picks the model.
`hubgen space create REPO_ID --out DIR` writes the same app with the repo filled in.
"""

import os

from hubgen.demo_utils import launch_options, limit_uploads, space_demo

limit_uploads()  # image uploads are bounded before Gradio decodes them
model = os.environ.get("HUBGEN_MODEL")
demo = space_demo(model)  # unset or unloadable: a page that says what to set, not a crash

if __name__ == "__main__":
    demo.launch(**launch_options())
