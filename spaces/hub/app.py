"""The hub Space: a gallery of hubgen models with their cards, live demos and a leaderboard.

Configured by environment variables (see hubgen.gallery.gallery_from_env): HUBGEN_GALLERY_DIR, a folder of model
folders (default `models`, what `make quickstart` writes; works offline), HUBGEN_GALLERY_HUB=1 to list hubgen models
on the Hub (`list_models(filter="hubgen")`), narrowed by HUBGEN_GALLERY_AUTHOR and HUBGEN_GALLERY_TAGS.
The app itself lives in `hubgen.gallery.build_gallery`.
"""

from hubgen.demo_utils import launch_options
from hubgen.gallery import gallery_from_env

demo = gallery_from_env()

if __name__ == "__main__":
    demo.launch(**launch_options())
