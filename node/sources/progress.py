"""How far an import is: counts, and what failed and why, for the viewer to show.

One record per request. It lives in memory while the import runs and is written into the
viewing context (its `sources` JSON) by whoever owns the context, through `on_change`. Each
object's outcome is also kept by the object's identity (`SourceObject.identity`): the writer
stores the new ones beside the snapshot (`take_unsaved`), and an import resumed after a crash
starts from them (`restore`), skipping those objects and counting them as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A request can name thousands of instances; the context keeps the first failures in full.
MAX_FAILURES = 500


@dataclass
class StudyCounts:
    done: int = 0
    failed: int = 0
    # Of the failed: refused because the index holds the study for another patient.
    refused: int = 0

    @property
    def another_patients(self) -> bool:
        """Whether every object of the study was refused as another patient's: the study the
        request names is not the one the index holds under its UID."""
        return self.done == 0 and self.failed > 0 and self.refused == self.failed


@dataclass(frozen=True)
class ItemOutcome:
    item: str
    # "done", "duplicate", "failed", or "refused" (failed: the study is another patient's).
    outcome: str
    study_uid: str = ""
    sop_uid: str = ""
    message: str = ""

    @property
    def where(self) -> str:
        """The object's place in the request (see `SourceObject.identity`)."""
        return self.item.split("\n", 1)[0]


@dataclass
class ImportProgress:
    # "listing" -> "fetching" -> "done"; "interrupted" when its node stopped first (the job is
    # resumed by the next instance to claim it); "stopped" when it failed as a whole.
    state: str = "listing"
    total: int = 0
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    more_failures: int = 0
    studies: dict[str, StudyCounts] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set, repr=False)
    unsaved: list[ItemOutcome] = field(default_factory=list, repr=False)
    on_change: Callable[[ImportProgress], None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "interrupted")

    def add_total(self, count: int) -> None:
        self.total += count
        self._changed()

    def skip(self, count: int = 1) -> None:
        self.skipped += count
        self._changed()

    def succeed(self, study_uid: str, duplicate: bool = False, item: str = "",
                sop_uid: str = "") -> None:
        """One object imported (or already there); `item` names it for a resumed import."""
        if item:
            self._settle(ItemOutcome(item, "duplicate" if duplicate else "done", study_uid,
                                     sop_uid))
        self.done += 1
        self.duplicates += int(duplicate)
        self.studies.setdefault(study_uid, StudyCounts()).done += 1
        self._changed()

    def fail(self, where: str, message: str, study_uid: str = "", sop_uid: str = "",
             counted: bool = True, item: str = "", refused: bool = False) -> None:
        """One object failed (`counted`), or a whole source could not be listed (not counted
        in `total`, so not in `failed` either). With `item`, the failure is final: a resumed
        import does not try that object again. `refused`: the index holds the object's study
        for another patient."""
        if item:
            self._settle(ItemOutcome(item, "refused" if refused else "failed", study_uid,
                                     sop_uid, message))
        if counted:
            self.failed += 1
            if study_uid:
                counts = self.studies.setdefault(study_uid, StudyCounts())
                counts.failed += 1
                counts.refused += int(refused)
        if len(self.failures) < MAX_FAILURES:
            entry = {"where": where, "message": message}
            if study_uid:
                entry["studyInstanceUID"] = study_uid
            if sop_uid:
                entry["sopInstanceUID"] = sop_uid
            self.failures.append(entry)
        else:
            self.more_failures += 1
        self._changed()

    def _settle(self, outcome: ItemOutcome) -> None:
        self.settled.add(outcome.item)
        self.unsaved.append(outcome)

    def restore(self, outcomes: list[ItemOutcome]) -> None:
        """Count what an earlier run of the same import finished (not saved again)."""
        for outcome in outcomes:
            if outcome.item in self.settled:
                continue
            if outcome.outcome in ("failed", "refused"):
                self.fail(outcome.where, outcome.message, outcome.study_uid,
                          outcome.sop_uid, refused=outcome.outcome == "refused")
            else:
                self.succeed(outcome.study_uid, outcome.outcome == "duplicate")
            self.settled.add(outcome.item)

    def take_unsaved(self) -> list[ItemOutcome]:
        """The outcomes not yet handed to the writer (who puts them back if writing fails)."""
        unsaved, self.unsaved = self.unsaved, []
        return unsaved

    def set_state(self, state: str) -> None:
        self.state = state
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state, "total": self.total, "done": self.done,
            "failed": self.failed, "duplicates": self.duplicates, "skipped": self.skipped,
            "failures": list(self.failures), "moreFailures": self.more_failures,
            "studies": {uid: {"done": c.done, "failed": c.failed}
                        for uid, c in self.studies.items()},
        }
