"""The doctor's report: a list of checks, each ``pass``, ``fail`` or ``skipped`` with a one-line detail."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reskd_infer.io.files import atomic_write

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
REPORT_SCHEMA = "reskd-infer/doctor/1"
JSON_NAME, MARKDOWN_NAME = "doctor.json", "doctor.md"


@dataclass
class Check:
    """One check's outcome. ``detail`` says what was measured, or why it failed or was skipped."""

    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Report:
    environment: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def summary(self) -> dict[str, int]:
        return {status: sum(c.status == status for c in self.checks) for status in (PASS, FAIL, SKIPPED)}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "created": self.created, "environment": self.environment,
                "summary": self.summary(), "checks": [c.to_dict() for c in self.checks],
                "throughput": self.throughput}

    def to_markdown(self) -> str:
        s = self.summary()
        lines = [f"# reskd-doctor report ({self.created})", "",
                 f"{s[PASS]} passed, {s[FAIL]} failed, {s[SKIPPED]} skipped.", "", "## Environment", "",
                 "| what | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in self.environment.items()]
        lines += ["", "## Checks", "", "| check | status | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {c.status.upper() if c.status == FAIL else c.status} | {_cell(c.detail)} |"
                  for c in self.checks]
        if self.throughput:
            lines += ["", "## Throughput (median of the timed rounds)", "",
                      "| backend | device | batch | median ms | clips/s |", "|---|---|---|---|---|"]
            lines += [f"| {t['backend']} | {t['device']} | {t['batch']} | {t['median_ms']:.2f} | {t['clips_per_s']:.1f} |"
                      for t in self.throughput]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``doctor.json`` and ``doctor.md`` into ``out_dir`` (created); returns both paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        paths = (atomic_write(folder / JSON_NAME, lambda tmp: Path(tmp).write_text(text)),
                 atomic_write(folder / MARKDOWN_NAME, lambda tmp: Path(tmp).write_text(self.to_markdown())))
        for path in paths:
            path.chmod(0o644)  # atomic writes create 0600 temp files; the report is meant to be shared
        return paths


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
