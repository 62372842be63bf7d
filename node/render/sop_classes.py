"""What kind of content an instance holds, from its SOP class and transfer syntax alone (the
index knows both), so that a series list never opens a file."""

from __future__ import annotations

from typing import Literal

ContentKind = Literal["image", "video", "pdf", "sr", "slide", "other"]

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
# Video Endoscopic, Microscopic, Photographic.
VIDEO_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2.1",
                           "1.2.840.10008.5.1.4.1.1.77.1.4.1"})
# MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 syntaxes: the stored stream is a video file.
VIDEO_SYNTAX_PREFIX = "1.2.840.10008.1.2.4.10"
# Objects without pixels that are neither documents nor reports: presentation states,
# waveforms, raw data, registrations, segmentations as surfaces, and the like.
NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.11.",   # presentation states
    "1.2.840.10008.5.1.4.1.1.9.",    # waveforms
    "1.2.840.10008.5.1.4.1.1.66",    # raw data, registrations, surfaces
    "1.2.840.10008.5.1.4.1.1.104.",  # other encapsulated documents (CDA, STL, ...)
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects other than RT Image
    "1.2.840.10008.5.1.4.1.1.68.",   # surface scans
    "1.2.840.10008.5.1.4.1.1.200.",  # CT/XA defined procedure protocols
    "1.2.840.10008.5.1.4.34.",       # RT plans and treatment records
    "1.2.840.10008.5.1.4.38.",       # hanging protocols, colour palettes
    "1.2.840.10008.5.1.4.39.",
    "1.2.840.10008.5.1.4.43.",
    "1.2.840.10008.5.1.4.44.",
    "1.2.840.10008.5.1.4.45.",
)
RT_IMAGE = "1.2.840.10008.5.1.4.1.1.481.1"
# What hideDocuments hides, by SOP Class UID prefix: Structured Reports and encapsulated
# documents (PDF, CDA, ...).
DOCUMENT_PREFIXES = (SR_PREFIX, "1.2.840.10008.5.1.4.1.1.104.")


def content_kind(sop_class_uid: str, transfer_syntax: str = "") -> ContentKind:
    if sop_class_uid == ENCAPSULATED_PDF:
        return "pdf"
    if sop_class_uid.startswith(SR_PREFIX):
        return "sr"
    if sop_class_uid == WSI:
        return "slide"
    if sop_class_uid in VIDEO_CLASSES or transfer_syntax.startswith(VIDEO_SYNTAX_PREFIX):
        return "video"
    if sop_class_uid != RT_IMAGE and sop_class_uid.startswith(NON_IMAGE_PREFIXES):
        return "other"
    return "image"


def is_image(sop_class_uid: str, transfer_syntax: str = "") -> bool:
    return content_kind(sop_class_uid, transfer_syntax) == "image"
