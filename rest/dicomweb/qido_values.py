"""What a QIDO-RS matching value of a date, time or number attribute may be, checked before the
query: PS3.18's Search transaction answers an invalid query parameter value with 400, where the
index's matching would only find nothing (204) and leave the client to believe no study matches.

The forms are those the index's C-FIND matching reads (node/index/query.py and
docs/CONFORMANCE.md, section 7): dates `YYYYMMDD` (or the old `YYYY.MM.DD`), times
`HH[MM[SS[.FFFFFF]]]`, each alone or as a range (`A-B`, `-B`, `A-`), with `*` and `?`
wildcards outside a range; numbers as whole numbers. A value of `*` only, or empty, is
universal matching and always allowed.
"""

from __future__ import annotations

import re
from datetime import date

from node.errors import InvalidInput
from node.index.query import Kind

# The index's integer columns (NumberOfFrames) hold 32-bit values: a larger number could not
# be compared on PostgreSQL.
MAX_NUMBER = 2**31 - 1
_TIME = re.compile(r"^([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?$")
# A wildcard pattern's other characters: what the dates and times it is meant to match are
# made of.
_PATTERN = re.compile(r"^[0-9.*?]+$")
FORMS = {
    "date": "a date YYYYMMDD (or YYYY.MM.DD), or a range YYYYMMDD-YYYYMMDD, -YYYYMMDD or "
            "YYYYMMDD-",
    "time": "a time HHMMSS.FFFFFF (HH, HHMM and HHMMSS too), or a range HHMM-HHMM, -HHMM or "
            "HHMM-",
    "int": f"a whole number from 0 to {MAX_NUMBER}",
    "count": f"a whole number from 0 to {MAX_NUMBER}",
}


def check_value(kind: Kind, value: str, name: str) -> None:
    """Raise InvalidInput naming the parameter `name` when `value` is not a form the index
    reads for an attribute of `kind`; other kinds are not checked here."""
    if kind not in FORMS:
        return
    text = value.strip()
    if not text or set(text) == {"*"} or _readable(kind, text):
        return
    raise InvalidInput(f"{name}: not {FORMS[kind]}", field=name)


def _readable(kind: Kind, text: str) -> bool:
    if kind in ("int", "count"):
        return bool(re.fullmatch(r"[0-9]{1,10}", text)) and int(text) <= MAX_NUMBER
    if kind == "date":
        text = text.replace(".", "")
    if "-" in text:
        low, _, high = (part.strip() for part in text.partition("-"))
        return bool(low or high) and all(_single(kind, bound) for bound in (low, high) if bound)
    if "*" in text or "?" in text:
        return bool(_PATTERN.match(text))
    return _single(kind, text)


def _single(kind: Kind, text: str) -> bool:
    if kind == "date":
        if not re.fullmatch(r"[0-9]{8}", text):
            return False
        try:
            date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return False
        return True
    found = _TIME.match(text)
    if found is None:
        return False
    hours, minutes, seconds = found.groups()
    return (int(hours) < 24 and (minutes is None or int(minutes) < 60)
            and (seconds is None or int(seconds) <= 60))
