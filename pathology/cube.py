"""The .cube 3D colour lookup table format (Adobe/Resolve), parsed fully and strictly.

A lab uploads one per slide; a mistake in it would silently tint every tile, so anything
unexpected is refused with the line at fault named: unknown keywords, keywords after the data,
rows that are not three finite numbers, a row count other than LUT_3D_SIZE cubed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from node.errors import InvalidInput

MIN_SIZE = 2
# Pillow's Color3DLUT takes at most 65 points per axis.
MAX_SIZE = 65
# 65^3 rows of three numbers with generous formatting fit in 16 MiB.
MAX_BYTES = 16 * 1024 * 1024

Triple = tuple[float, float, float]


class CubeError(InvalidInput):
    """A .cube file that cannot be used; `line` is 1-based, 0 when no single line is at fault."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message, field="cube")
        self.line = line


@dataclass(frozen=True, eq=False)
class CubeLut:
    title: str
    size: int
    domain_min: Triple
    domain_max: Triple
    # Output RGB per grid point, shape (size, size, size, 3) indexed [blue][green][red]: the
    # file's order, red changing fastest.
    table: np.ndarray = field(repr=False)

    @property
    def default_domain(self) -> bool:
        return self.domain_min == (0.0, 0.0, 0.0) and self.domain_max == (1.0, 1.0, 1.0)


def parse_cube(data: bytes) -> CubeLut:
    if not data.strip():
        raise CubeError("the .cube file is empty")
    if len(data) > MAX_BYTES:
        raise CubeError(f"the .cube file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    text = _decode(data)
    title = ""
    size = 0
    size_line = 0
    domain_min: Triple = (0.0, 0.0, 0.0)
    domain_max: Triple = (1.0, 1.0, 1.0)
    seen: set[str] = set()
    lines = text.splitlines()
    data_start = len(lines)
    for index, raw in enumerate(lines):
        number = index + 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if _is_number(head):
            if not size:
                raise CubeError("data row before LUT_3D_SIZE", number)
            data_start = index
            break
        keyword = head.upper()
        if keyword in seen:
            raise CubeError(f"{keyword} given twice", number)
        seen.add(keyword)
        rest = line[len(head):].strip()
        if keyword == "TITLE":
            title = _title(rest, number)
        elif keyword == "LUT_3D_SIZE":
            size = _size(rest, number)
            size_line = number
        elif keyword == "DOMAIN_MIN":
            domain_min = _triple(rest.split(), number, "DOMAIN_MIN")
        elif keyword == "DOMAIN_MAX":
            domain_max = _triple(rest.split(), number, "DOMAIN_MAX")
        elif keyword == "LUT_3D_INPUT_RANGE":
            low, high = _pair(rest.split(), number)
            domain_min, domain_max = (low, low, low), (high, high, high)
        elif keyword == "LUT_1D_SIZE":
            raise CubeError("1D lookup tables are not supported (LUT_1D_SIZE)", number)
        else:
            raise CubeError(f"unknown keyword {head}", number)
    if not size:
        raise CubeError("LUT_3D_SIZE is missing")
    for channel in range(3):
        if not domain_min[channel] < domain_max[channel]:
            raise CubeError(f"DOMAIN_MIN must be below DOMAIN_MAX in every channel "
                            f"(channel {'RGB'[channel]})")
    # Data rows are checked and converted together, not one by one: that is what makes a
    # 65^3 table take a fraction of a second.
    rows = [
        (number, line)
        for number, raw in enumerate(lines[data_start:], start=data_start + 1)
        if (line := raw.strip()) and not line.startswith("#")
    ]
    for number, line in rows:
        if not _is_number(line):
            raise CubeError(f"keyword {line.split()[0]} after the data rows", number)
    count = size**3
    if len(rows) > count:
        raise CubeError(f"more than {size}^3 = {count} data rows", rows[count][0])
    if len(rows) < count:
        last_line = rows[-1][0] if rows else len(lines)
        raise CubeError(
            f"LUT_3D_SIZE {size} (line {size_line}) needs {count} data rows, found {len(rows)}",
            last_line,
        )
    values = _data(rows)
    table = values.reshape(size, size, size, 3)
    return CubeLut(title, size, domain_min, domain_max, table)


def _data(rows: list[tuple[int, str]]) -> np.ndarray:
    """All rows as an (n, 3) array; the first bad row is named."""
    for number, line in rows:
        if len(line.split()) != 3:
            _triple(line.split(), number, "a data row")
    try:
        values = np.array(" ".join(line for _, line in rows).split(), dtype=np.float64)
    except ValueError:
        for number, line in rows:
            _triple(line.split(), number, "a data row")
        raise
    values = values.reshape(-1, 3)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        number, line = rows[int(np.argmin(finite))]
        raise CubeError(f"a data row: {line!r} holds a number that is not finite", number)
    return values


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CubeError("not text (a byte that is not UTF-8)", line) from exc


def _is_number(token: str) -> bool:
    return token[0].isdigit() or token[0] in "+-."


def _float(token: str, number: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise CubeError(f"{what}: {token!r} is not a number", number) from None
    if not math.isfinite(value):
        raise CubeError(f"{what}: {token!r} is not a finite number", number)
    return value


def _triple(tokens: list[str], number: int, what: str) -> Triple:
    if len(tokens) != 3:
        raise CubeError(f"{what} needs three numbers, found {len(tokens)}", number)
    r, g, b = (_float(t, number, what) for t in tokens)
    return (r, g, b)


def _pair(tokens: list[str], number: int) -> tuple[float, float]:
    if len(tokens) != 2:
        raise CubeError(f"LUT_3D_INPUT_RANGE needs two numbers, found {len(tokens)}", number)
    return _float(tokens[0], number, "LUT_3D_INPUT_RANGE"), _float(
        tokens[1], number, "LUT_3D_INPUT_RANGE")


def _size(rest: str, number: int) -> int:
    try:
        size = int(rest)
    except ValueError:
        raise CubeError(f"LUT_3D_SIZE must be a whole number, found {rest!r}", number) from None
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise CubeError(f"LUT_3D_SIZE must be {MIN_SIZE} to {MAX_SIZE}, found {size}", number)
    return size


def _title(rest: str, number: int) -> str:
    if len(rest) >= 2 and rest[0] == rest[-1] == '"':
        return rest[1:-1]
    raise CubeError('TITLE needs its text in double quotes', number)
