"""What a pathologist knows a slide by: the container (slide barcode) and the specimen -> block ->
slide chain it was cut from, with the stain.

One model for both doors: the POST API's JSON (node/sources) and DICOM WSI headers (pathology/)
fill the same `SlideMetadata`, and the JSON wins field by field where both say something.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.errors import InvalidInput

# The POST API's JSON keys, in the spec's order, and the attribute each fills.
JSON_FIELDS: dict[str, str] = {
    "containerIdentifier": "container_identifier",
    "specimenIdentifier": "specimen_identifier",
    "specimenAlias": "specimen_alias",
    "specimenProcedure": "specimen_procedure",
    "specimenBodySite": "specimen_body_site",
    "blockIdentifier": "block_identifier",
    "blockAlias": "block_alias",
    "blockProcedure": "block_procedure",
    "slideIdentifier": "slide_identifier",
    "slideAlias": "slide_alias",
    "slideStainCode": "slide_stain_code",
}
MAX_FIELD_LENGTH = 256


@dataclass(frozen=True)
class SlideMetadata:
    container_identifier: str = ""
    specimen_identifier: str = ""
    specimen_alias: str = ""
    specimen_procedure: str = ""
    specimen_body_site: str = ""
    block_identifier: str = ""
    block_alias: str = ""
    block_procedure: str = ""
    slide_identifier: str = ""
    slide_alias: str = ""
    slide_stain_code: str = ""

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> SlideMetadata:
        """The spec's instance keys; unknown keys are left to the caller (an instance carries
        file, mimeType and UIDs beside these). A non-string value is refused by name."""
        values: dict[str, str] = {}
        for key, attribute in JSON_FIELDS.items():
            value = fields.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidInput(f"{key} must be a string", field=key)
            if len(value) > MAX_FIELD_LENGTH:
                raise InvalidInput(f"{key} is longer than {MAX_FIELD_LENGTH} characters",
                                   field=key)
            values[attribute] = value.strip()
        return cls(**values)

    def to_json(self) -> dict[str, str]:
        return {key: getattr(self, attribute) for key, attribute in JSON_FIELDS.items()}

    def non_empty_json(self) -> dict[str, str]:
        """Only the fields that say something (what a viewing context keeps)."""
        return {key: value for key, value in self.to_json().items() if value}

    def overridden_by(self, other: SlideMetadata) -> SlideMetadata:
        """These values, with every non-empty field of `other` taking precedence."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name)
        }
        return dataclasses.replace(self, **changes)


# Codes of TID 8001 (Specimen Preparation) that the chain is read from.
