"""A viewer on the medium: the configured folder, copied as is, plus AUTORUN.INF and one launch
file per platform in the root, each starting the viewer on the medium's images.

The folder keeps its long names through Joliet (Windows) and Rock Ridge (macOS, Linux);
executables keep their executable bit through Rock Ridge. A launcher is written only for a
platform whose executable is in the folder, so a viewer for one platform gets one launcher.

What a launcher passes is `ViewerSpec.arguments`, with `{dicom}` and `{dicomdir}` made into the
medium's DICOM folder and DICOMDIR wherever the medium is mounted. The default suits Weasis
portable, whose own launch scripts pass on only Weasis commands (arguments starting with `$`)
and which, started from VIEWER/, would not find the images at the root by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dicomdir.content import BytesContent, FileRange, MediumFile
from node.config import MediaSection
from node.errors import ConfigError

VIEWER_FOLDER = "VIEWER"
WINDOWS_LAUNCHER = "START.BAT"
MACOS_LAUNCHER = "START.COMMAND"
LINUX_LAUNCHER = "START.SH"


@dataclass(frozen=True)
class ViewerSpec:
    folder: Path
    windows: str
    macos: str
    linux: str
    # What the launchers pass; [media] viewer_arguments.
    arguments: tuple[str, ...] = MediaSection().viewer_arguments


def viewer_files(spec: ViewerSpec) -> list[MediumFile]:
    """Every file of the viewer folder under VIEWER/, in a stable order."""
    if not spec.folder.is_dir():
        raise ConfigError(f"media.viewer_dir is not a folder: {spec.folder}")
    files: list[MediumFile] = []
    for dirpath, dirnames, filenames in os.walk(spec.folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(spec.folder).parts
            executable = os.access(path, os.X_OK)
            files.append(MediumFile((VIEWER_FOLDER, *relative), FileRange.whole(path),
                                    executable))
    return files


def _exists(spec: ViewerSpec, relative: str) -> bool:
    return bool(relative) and (spec.folder / relative).exists()


def _checked(arguments: tuple[str, ...]) -> tuple[str, ...]:
    for argument in arguments:
        if not argument.isprintable() or not argument.isascii():
            raise ConfigError(f"media.viewer_arguments: {argument[:40]!r} must be printable "
                              "ASCII (it is written into the launch scripts)")
    return arguments


def _batch_arguments(arguments: tuple[str, ...]) -> str:
    """Each argument in double quotes for cmd.exe and the program's own parsing: a quote in
    it as \\", a % as %%; the placeholders as paths beside START.BAT."""
    quoted = []
    for argument in arguments:
        text = argument.replace("%", "%%").replace('"', '\\"')
        text = text.replace("{dicomdir}", "%~dp0DICOMDIR").replace("{dicom}", "%~dp0DICOM")
        quoted.append(f'"{text}"')
    return " ".join(quoted)


def _sh_arguments(arguments: tuple[str, ...]) -> str:
    """Each argument in double quotes for sh, with \\ " $ ` escaped (so Weasis's `$dicom:get`
    stays text); the placeholders as paths beside the script."""
    quoted = []
    for argument in arguments:
        text = argument
        for special in ('\\', '"', "$", "`"):
            text = text.replace(special, "\\" + special)
        text = text.replace("{dicomdir}", "$HERE/DICOMDIR").replace("{dicom}", "$HERE/DICOM")
        quoted.append(f'"{text}"')
    return " ".join(quoted)


def launchers(spec: ViewerSpec) -> list[tuple[str, MediumFile]]:
    """(platform, launch file) for each platform whose executable the folder has."""
    result: list[tuple[str, MediumFile]] = []
    arguments = _checked(spec.arguments)
    if _exists(spec, spec.windows):
        target = spec.windows.replace("/", "\\")
        script = (
            "@echo off\r\n"
            "rem Opens the DICOM images of this medium with the viewer in the VIEWER folder.\r\n"
            f'start "" "%~dp0{VIEWER_FOLDER}\\{target}" {_batch_arguments(arguments)}\r\n'
        )
        result.append(("Windows", MediumFile((WINDOWS_LAUNCHER,),
                                             BytesContent(script.encode("ascii")), True)))
    if _exists(spec, spec.macos):
        target = f'"$HERE/{VIEWER_FOLDER}/{spec.macos}"'
        start = (f"open -a {target} --args {_sh_arguments(arguments)}"
                 if spec.macos.endswith(".app")
                 else f"exec {target} {_sh_arguments(arguments)}")
        script = (
            "#!/bin/sh\n"
            "# Opens the DICOM images of this medium with the viewer in the VIEWER folder.\n"
            'HERE="$(cd "$(dirname "$0")" && pwd)"\n'
            f"{start}\n"
        )
        result.append(("macOS", MediumFile((MACOS_LAUNCHER,),
                                           BytesContent(script.encode("utf-8")), True)))
    if _exists(spec, spec.linux):
        script = (
            "#!/bin/sh\n"
            "# Opens the DICOM images of this medium with the viewer in the VIEWER folder.\n"
            'HERE="$(cd "$(dirname "$0")" && pwd)"\n'
            f'exec "$HERE/{VIEWER_FOLDER}/{spec.linux}" {_sh_arguments(arguments)}\n'
        )
        result.append(("Linux", MediumFile((LINUX_LAUNCHER,),
                                           BytesContent(script.encode("utf-8")), True)))
    return result


def autorun_inf(label: str, has_windows_launcher: bool) -> MediumFile:
    """AUTORUN.INF: Windows offers to start the viewer when the disc is inserted (or, with no
    Windows launcher, to open INDEX.HTM)."""
    action = WINDOWS_LAUNCHER if has_windows_launcher else "INDEX.HTM"
    text = (
        "[autorun]\r\n"
        f"shellexecute={action}\r\n"
        "action=Open the DICOM images\r\n"
        f"label={label}\r\n"
    )
    return MediumFile(("AUTORUN.INF",), BytesContent(text.encode("ascii")))
