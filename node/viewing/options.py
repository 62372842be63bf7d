"""The viewing options a token carries, with the spec's defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

AnnotationVisibility = Literal["ALL", "USER"]


@dataclass(frozen=True)
class ViewingOptions:
    anonymize: bool = False
    hide_search: bool = True
    hide_documents: bool = True
    hide_layers: bool = False
    annotation_visibility: AnnotationVisibility = "ALL"
    # Digital pathology: the slide to show within the case named by accNum.
    container_identifier: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "anonymize": self.anonymize,
            "hideSearch": self.hide_search,
            "hideDocuments": self.hide_documents,
            "hideLayers": self.hide_layers,
            "annotationVisibility": self.annotation_visibility,
            "containerIdentifier": self.container_identifier or None,
        }

    def features(self, permissions: tuple[str, ...]) -> dict[str, bool]:
        """What the viewer shows: the role must allow a feature and the request must not
        hide it."""
        allowed = set(permissions)
        return {
            "search": "search" in allowed and not self.hide_search,
            "documents": "documents" in allowed and not self.hide_documents,
            "layers": "layers" in allowed and not self.hide_layers,
            "download": "download" in allowed,
            "annotations": "annotations" in allowed,
            "export": "export" in allowed,
            "save": "save" in allowed,
        }


@functools.lru_cache(maxsize=256)
def options_json(options: ViewingOptions) -> dict[str, Any]:
    """`options.as_json()`, made once per distinct set of options (most tokens share a few).
    The dictionary is shared: callers store it, never change it."""
    return options.as_json()
