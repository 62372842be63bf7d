"""Media application profiles (PS3.11): which transfer syntaxes a medium may hold.

Choice by content (`choose_profile`): STD-GEN-CD when every instance is uncompressed (and it fits
a CD), the DVD JPEG or JPEG 2000 profile when compressed instances of that family are present
(the BD one when too large for a DVD), a BD video profile for MPEG video. A requested profile
(the `profile` parameter of getIso) is honoured by transcoding what it does not allow.

When the profile is chosen by content, an instance no profile allows and no decoder here can
decompress (JPEG-LS, say, next to JPEG files) is written as stored and README.TXT says so: a
disc that opens in most viewers serves the patient better than no disc. When a profile is
requested, such an instance is refused instead (400, naming it).

Transcoding never compresses, and never recompresses lossily: what a profile does not allow is
written in Explicit VR Little Endian, which every general-purpose profile allows.
- Implicit VR Little Endian, Explicit VR Big Endian and Deflated Explicit VR Little Endian hold
  the same data uncompressed; they are rewritten in Explicit VR Little Endian (STD-GEN-CD
  requires it). Implicit VR files, the common case, are re-encoded without decoding the pixels.
- Compressed instances a profile does not allow are decompressed, when pydicom has a decoder
  for their syntax (Pillow: JPEG baseline/extended, JPEG 2000; pydicom itself: RLE); Lossy Image
  Compression stays "01" on lossy ones. Without a decoder, the export is refused with the
  instances named: nothing non-conformant is written silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    MPEG2MPHL,
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP42STEREO,
    MPEG4HP422D,
    MPEG4HP423D,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
)

from node.errors import InvalidInput

JPEG_FAMILY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1})
J2K_FAMILY = frozenset({JPEG2000Lossless, JPEG2000})
# Uncompressed syntaxes that are rewritten in Explicit VR Little Endian without decoding.
REENCODED = frozenset({ImplicitVRLittleEndian, ExplicitVRBigEndian,
                       DeflatedExplicitVRLittleEndian})


# Capacities of the media the profiles are for (bytes): an 80-minute CD-R, a dual-layer DVD, a
# dual-layer BD-R.
CD_BYTES = 360_000 * 2048
DVD_BYTES = 8_547_991_552
BD_BYTES = 50_050_629_632


@dataclass(frozen=True)
class MediaProfile:
    name: str
    transfer_syntaxes: frozenset[str]
    description: str
    capacity: int


def _profile(name: str, syntaxes: Iterable[str], description: str) -> MediaProfile:
    capacity = CD_BYTES if "-CD" in name else DVD_BYTES if "-DVD-" in name else BD_BYTES
    return MediaProfile(name, frozenset({ExplicitVRLittleEndian, *syntaxes}), description,
                        capacity)


# In order of preference when chosen by content: the first that allows everything wins.
PROFILES: tuple[MediaProfile, ...] = (
    _profile("STD-GEN-CD", (), "General Purpose CD-R Interchange"),
    _profile("STD-GEN-DVD-JPEG", JPEG_FAMILY, "General Purpose DVD Interchange with JPEG"),
    _profile("STD-GEN-DVD-J2K", J2K_FAMILY, "General Purpose DVD Interchange with JPEG 2000"),
    _profile("STD-GEN-BD-JPEG", JPEG_FAMILY, "General Purpose BD Interchange with JPEG"),
    _profile("STD-GEN-BD-J2K", J2K_FAMILY, "General Purpose BD Interchange with JPEG 2000"),
    _profile("STD-GEN-BD-MPEG2-MPML", (MPEG2MPML,),
             "General Purpose BD Interchange with MPEG2 MP@ML"),
    _profile("STD-GEN-BD-MPEG2-MPHL", (MPEG2MPHL,),
             "General Purpose BD Interchange with MPEG2 MP@HL"),
    _profile("STD-GEN-BD-MPEG4-HPLV41", (MPEG4HP41,),
             "General Purpose BD Interchange with MPEG-4 AVC/H.264 HiP@Level4.1"),
    _profile("STD-GEN-BD-MPEG4-HPLV41BD", (MPEG4HP41BD,),
             "General Purpose BD Interchange with MPEG-4 AVC/H.264 BD-compatible HiP@Level4.1"),
    _profile("STD-GEN-BD-MPEG4-HPLV42-2D", (MPEG4HP422D,),
             "General Purpose BD Interchange with MPEG-4 AVC/H.264 HiP@Level4.2 for 2D video"),
    _profile("STD-GEN-BD-MPEG4-HPLV42-3D", (MPEG4HP423D,),
             "General Purpose BD Interchange with MPEG-4 AVC/H.264 HiP@Level4.2 for 3D video"),
    _profile("STD-GEN-BD-MPEG4-SHPLV42", (MPEG4HP42STEREO,),
             "General Purpose BD Interchange with MPEG-4 AVC/H.264 Stereo HiP@Level4.2"),
)
PROFILE_NAMES = tuple(p.name for p in PROFILES)
AUTO = "auto"


def profile_named(name: str) -> MediaProfile:
    for profile in PROFILES:
        if profile.name == name.upper():
            return profile
    raise InvalidInput(
        f"profile must be {AUTO!r} or one of {', '.join(PROFILE_NAMES)}; got {name!r}",
        field="profile",
    )


def medium_syntax(stored: str) -> str:
    """The syntax an instance has once the lossless re-encodings are done."""
    return ExplicitVRLittleEndian if stored in REENCODED else stored


def choose_profile(stored_syntaxes: Iterable[str], size: int = 0) -> MediaProfile:
    """The profile for instances in `stored_syntaxes` (about `size` bytes): the first (in
    `PROFILES` order) whose medium holds them and that allows all of them; otherwise the one
    allowing the most, the rest being decompressed. Uncompressed studies too large for a CD get
    STD-GEN-DVD-JPEG, which allows them as they are."""
    counts: dict[str, int] = {}
    for syntax in stored_syntaxes:
        key = medium_syntax(syntax)
        counts[key] = counts.get(key, 0) + 1
    fitting = [p for p in PROFILES if p.capacity >= size] or list(PROFILES)
    best = fitting[0]
    best_covered = -1
    for profile in fitting:
        covered = sum(n for syntax, n in counts.items() if syntax in profile.transfer_syntaxes)
        if covered == sum(counts.values()):
            return profile
        if covered > best_covered:
            best, best_covered = profile, covered
    return best


def select_profile(requested: str, stored_syntaxes: Iterable[str], size: int = 0
                   ) -> MediaProfile:
    if not requested or requested.lower() == AUTO:
        return choose_profile(stored_syntaxes, size)
    return profile_named(requested)
