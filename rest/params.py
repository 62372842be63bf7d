"""Query parameters of the viewer APIs, read strictly: each error is a 400 naming its parameter.

Rules shared by every API: a single-valued parameter given twice is an error; a text parameter
given empty counts as absent; booleans are `true`/`false` in any case; UIDs must be valid DICOM
UIDs; text that goes into a DICOM query may not carry wildcards or backslashes (they would
change what the query matches).
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import MultiMapping

from node.errors import InvalidInput
from node.ingest.instance_record import is_valid_uid

_QUERY_UNSAFE = set("\\*?")


class QueryParams:
    def __init__(self, query: MultiMapping[str]) -> None:
        # One pass over the query, then each parameter is a dict look-up: a token request
        # reads a dozen parameters, most of them absent.
        self._query = query
        self._lists: dict[str, list[str]] = {}
        for name, value in query.items():
            self._lists.setdefault(name, []).append(value)

    def _values(self, names: Iterable[str]) -> list[str]:
        return [value for name in names for value in self._lists.get(name, ())]

    def one(self, name: str, *, required: bool = False, max_length: int = 64,
            aliases: tuple[str, ...] = (), dicom: bool = False) -> str:
        """A single-valued text parameter ("" when absent)."""
        values = self._values((name, *aliases)) if aliases else self._lists.get(name, ())
        if len(values) > 1:
            raise InvalidInput(f"{name}: given {len(values)} times; it takes one value", name)
        value = values[0] if values else ""
        if not value:
            if required:
                raise InvalidInput(f"{name} is required", name)
            return ""
        if len(value) > max_length:
            raise InvalidInput(f"{name}: at most {max_length} characters", name)
        if not value.isprintable():
            raise InvalidInput(f"{name}: control characters are not allowed", name)
        if dicom and _QUERY_UNSAFE.intersection(value):
            raise InvalidInput(f"{name}: the characters \\ * ? are not allowed", name)
        return value

    def _single_raw(self, name: str) -> str | None:
        values = self._lists.get(name, ())
        if len(values) > 1:
            raise InvalidInput(f"{name}: given {len(values)} times; it takes one value", name)
        return values[0] if values else None

    def boolean(self, name: str, default: bool) -> bool:
        value = self._single_raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise InvalidInput(f"{name}: expected true or false", name)
        return lowered == "true"

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self._single_raw(name)
        if value is None:
            return default
        if value.upper() not in choices:
            raise InvalidInput(f"{name}: expected one of {', '.join(choices)}", name)
        return value.upper()

    def uids(self, name: str, aliases: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A 1-n UID parameter (repeated, under any of its spellings, in the request's order);
        every value must be a valid UID, and an error names the spelling the request used."""
        if aliases:
            spellings = {name, *aliases}
            given = [(key, value) for key, value in self._query.items() if key in spellings]
        else:
            given = [(name, value) for value in self._lists.get(name, ())]
        for spelling, value in given:
            if not is_valid_uid(value):
                raise InvalidInput(f"{spelling}: not a valid DICOM UID: {value[:80]!r}",
                                   spelling)
        return tuple(dict.fromkeys(value for _, value in given))

    def ae_titles(self, name: str) -> tuple[str, ...]:
        """AE titles separated by ';' (empty items ignored)."""
        text = self.one(name, max_length=1024)
        if not text:
            return ()
        titles = tuple(dict.fromkeys(t.strip() for t in text.split(";") if t.strip()))
        for title in titles:
            if len(title) > 16 or "\\" in title:
                raise InvalidInput(f"{name}: {title[:40]!r} is not an AE title", name)
        return titles

    def sticky(self) -> str:
        value = self.one("sticky")
        if value and not all(0x21 <= ord(c) <= 0x7E for c in value):
            raise InvalidInput("sticky: visible ASCII characters only", "sticky")
        return value
