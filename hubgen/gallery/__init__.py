"""The hub Space: a gallery of hubgen models with their cards, live demos and a leaderboard (`hubgen demo`)."""

from .app import build_gallery, gallery_from_env
from .catalog import Catalog, PipelineCache, leaderboard_rows

__all__ = ["build_gallery", "gallery_from_env", "Catalog", "PipelineCache", "leaderboard_rows"]
