"""Server-side rendering of stored frames for the web viewer, with an on-disk cache."""

from node.render.preload import PreloadResult, StudyPreloader, preload_study
from node.render.render_params import THUMBNAIL, VIEW, RenderParams, Window
from node.render.renderer import FrameRenderer, NotRenderable, Rendered
from node.render.sop_classes import ContentKind, content_kind, is_image
from node.render.study_images import StoredImage, StoredSeries, study_series

__all__ = [
    "THUMBNAIL",
    "VIEW",
    "ContentKind",
    "FrameRenderer",
    "NotRenderable",
    "PreloadResult",
    "RenderParams",
    "Rendered",
    "StoredImage",
    "StoredSeries",
    "StudyPreloader",
    "Window",
    "content_kind",
    "is_image",
    "preload_study",
    "study_series",
]
