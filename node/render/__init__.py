"""Stored frames for the viewers: rendered (DICOMweb's /rendered and /thumbnail) with an on-disk
cache, read by offset, series metadata made ahead, and studies warmed for fullPreloadStudy."""

from node.render.preload import StudyPreloader, preload_study
from node.render.render_params import THUMBNAIL, RenderParams, Window
from node.render.renderer import FrameRenderer, NotRenderable, Rendered
from node.render.sop_classes import is_image
from node.render.study_images import StoredImage, StoredSeries, study_series

__all__ = [
    "THUMBNAIL",
    "FrameRenderer",
    "NotRenderable",
    "RenderParams",
    "Rendered",
    "StoredImage",
    "StoredSeries",
    "StudyPreloader",
    "Window",
    "is_image",
    "preload_study",
    "study_series",
]
