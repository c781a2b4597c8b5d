"""Fleet reports: the pooled metrics of many bags, one row per bag (worst first), and the
comparison of two fleet runs bag by bag (which recordings got worse).

A fleet report directory holds ``report.json`` (this module's :class:`FleetReport`),
``report.md`` (headline, per-bag table, warnings), ``overall/`` (the pooled :class:`Report`
with its plots) and ``bags/<name>/`` (each bag's own report).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.report import Report, format_value, headline_metrics, write_report

#: Per-bag table columns, in this order, where any bag has them.
ROW_METRICS = ("mAP", "AP50", "precision", "recall", "mask_mAP", "mIoU", "pixel_accuracy")


@dataclass
class BagRow:
    """One bag of a fleet run.

    Attributes:
        name: the bag's name in the run (its path below the bags' common folder, or the manifest's).
        bag: the bag file.
        frames: image messages read; evaluated: frames scored (None when the bag failed).
        metrics: the bag's headline metrics (see :func:`~dl_vision.evaluation.report.headline_metrics`).
        model_ms: per-frame model time summary (``n``, ``mean``, ``p50`` ... ``max``; a frame's
            share of its batch), milliseconds.
        warnings: the bag report's warnings.
        error: why the bag was not scored, or None.
        report: folder of the bag's report, relative to the fleet report's.
    """

    name: str
    bag: str
    frames: Optional[int] = None
    evaluated: Optional[int] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    model_ms: Dict[str, Optional[float]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    error: Optional[str] = None
    report: Optional[str] = None


@dataclass
class FleetReport:
    """The result of a fleet run; ``to_dict()`` is what its ``report.json`` holds.

    Attributes:
        model: the evaluated models' name.
        sort_metric: the metric rows are sorted by (``mAP``, else ``mIoU``).
        bags: one row per bag, worst first (failed bags first of all).
        overall: the pooled report over every scored bag, or None when none could be pooled.
        overall_error: why there is no pooled report.
        execution: where and how it ran (runner, actors, shards, retries, wall seconds).
        warnings: bags not scored, shards retried, and the like.
    """

    model: str
    sort_metric: str
    bags: List[BagRow]
    overall: Optional[Report] = None
    overall_error: Optional[str] = None
    execution: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """The report as JSON-ready nested dicts, marked ``"kind": "fleet"``."""
        return {
            "kind": "fleet",
            "model": self.model,
            "sort_metric": self.sort_metric,
            "bags": [dataclasses.asdict(row) for row in self.bags],
            "overall": self.overall.to_dict() if self.overall else None,
            "overall_error": self.overall_error,
            "execution": self.execution,
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "FleetReport":
        """Rebuild a fleet report from :meth:`to_dict`'s output.

        Raises:
            EvaluationError: a section is missing or has the wrong shape.
        """
        try:
            rows = [BagRow(**row) for row in data["bags"]]
            overall = Report.from_dict(data["overall"]) if data.get("overall") else None
            return cls(
                model=data["model"],
                sort_metric=data["sort_metric"],
                bags=rows,
                overall=overall,
                overall_error=data.get("overall_error"),
                execution=dict(data.get("execution") or {}),
                warnings=list(data.get("warnings") or []),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EvaluationError(
                "fleet report: expected the fields of a dl_vision fleet report, found %s" % err
            ) from err

    def headline(self) -> Dict[str, float]:
        """The pooled headline metrics (empty without a pooled report)."""
        return headline_metrics(self.overall) if self.overall else {}

    def row(self, name: str) -> Optional[BagRow]:
        """The row of the bag named ``name``, or None."""
        return next((r for r in self.bags if r.name == name), None)


def sort_worst_first(rows: Sequence[BagRow], metric: str) -> List[BagRow]:
    """Failed bags first, then ascending ``metric`` (a bag without it counts as worst), then name."""

    def key(row: BagRow):
        value = row.metrics.get(metric)
        return (row.error is None, value is not None, value if value is not None else 0.0, row.name)

    return sorted(rows, key=key)


def report_folder(name: str) -> str:
    """``bags/<name>`` with path separators and odd characters made file-name safe."""
    return "bags/" + re.sub(r"[^A-Za-z0-9._-]+", "__", name.replace(".bag", "")).strip("_")


def write_fleet_report(fleet: FleetReport, bag_reports: Dict[str, Report], out_dir) -> Dict[str, Path]:
    """Write the fleet report, the pooled report and every bag's report under ``out_dir``.

    Args:
        fleet: the fleet report (each row's ``report`` is set here).
        bag_reports: ``{bag name: Report}`` of the bags that were scored.
        out_dir: the folder to write.

    Returns:
        ``{"json": ..., "markdown": ...}`` paths of the fleet report files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for row in fleet.bags:
        report = bag_reports.get(row.name)
        if report is not None:
            row.report = report_folder(row.name)
            write_report(report, out / row.report)
    if fleet.overall is not None:
        write_report(fleet.overall, out / "overall")
    files = {"json": out / "report.json", "markdown": out / "report.md"}
    files["json"].write_text(json.dumps(fleet.to_dict(), indent=2, sort_keys=True) + "\n")
    files["markdown"].write_text(fleet_markdown(fleet))
    return files


def _plain(value: Any) -> str:
    return "%.4g" % value if isinstance(value, float) else str(value)


def fleet_markdown(fleet: FleetReport) -> str:
    """The fleet report as Markdown: pooled headline, per-bag table worst first, warnings."""
    failed = [r for r in fleet.bags if r.error]
    execution = fleet.execution
    lines = ["# Fleet evaluation report", ""]
    lines += [
        "- model: `%s`" % fleet.model,
        "- bags: %d (%d not scored); frames: %d read, %d scored"
        % (
            len(fleet.bags),
            len(failed),
            sum(r.frames or 0 for r in fleet.bags),
            sum(r.evaluated or 0 for r in fleet.bags),
        ),
        "- ran on: %s" % ", ".join("%s %s" % (k, _plain(v)) for k, v in execution.items() if not isinstance(v, dict)),
        "",
        "## All bags pooled",
        "",
    ]
    if fleet.overall is not None:
        lines += ["| metric | value |", "|---|---|"]
        lines += ["| %s | %s |" % (k, format_value(v)) for k, v in fleet.headline().items()]
        lines += ["", "Details and plots: [overall/report.md](overall/report.md)"]
    else:
        lines.append("No pooled metrics: %s" % fleet.overall_error)
    columns = [m for m in ROW_METRICS if any(m in r.metrics for r in fleet.bags)]
    lines += [
        "",
        "## Per bag, worst first (by %s)" % fleet.sort_metric,
        "",
        "| bag | frames | scored | %s | model ms/frame p50 | warnings | report |" % " | ".join(columns),
        "|---" * (len(columns) + 6) + "|",
    ]
    for row in fleet.bags:
        if row.error:
            cells = [row.name, "n/a", "n/a"] + ["n/a"] * len(columns) + ["n/a", "", "**error**: " + row.error]
        else:
            cells = [row.name, format_value(row.frames), format_value(row.evaluated)]
            cells += [format_value(row.metrics.get(m)) for m in columns]
            cells += [format_value(row.model_ms.get("p50")), str(len(row.warnings))]
            cells.append("[report](%s/report.md)" % row.report)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if fleet.warnings:
        lines += ["", "## Warnings", ""] + ["- " + w for w in fleet.warnings]
    return "\n".join(lines) + "\n"


@dataclass
class BagDelta:
    """One bag's metric in a baseline and a candidate fleet run.

    Attributes:
        name: the bag's name.
        baseline, candidate: the metric in each run (None when absent or the bag failed).
        delta: ``candidate - baseline``, or None.
        note: ``""``, or why a value is missing (``only in baseline``, ``failed in candidate: ...``).
    """

    name: str
    baseline: Optional[float]
    candidate: Optional[float]
    delta: Optional[float]
    note: str = ""


def compare_bags(baseline: FleetReport, candidate: FleetReport, metric: str) -> List[BagDelta]:
    """Per-bag deltas of ``metric``, most regressed first: bags the candidate lost or failed, then
    ascending delta, then bags without a delta."""
    out = []
    for name in [r.name for r in baseline.bags] + [r.name for r in candidate.bags if baseline.row(r.name) is None]:
        base, cand = baseline.row(name), candidate.row(name)
        b = base.metrics.get(metric) if base is not None else None
        c = cand.metrics.get(metric) if cand is not None else None
        note = ""
        if cand is None:
            note = "only in baseline"
        elif base is None:
            note = "only in candidate"
        elif cand.error:
            note = "failed in candidate: %s" % cand.error
        elif base.error:
            note = "failed in baseline: %s" % base.error
        out.append(BagDelta(name, b, c, None if b is None or c is None else c - b, note))

    def key(d: BagDelta):
        lost = d.note == "only in baseline" or d.note.startswith("failed in candidate")
        return (not lost, d.delta is None, d.delta if d.delta is not None else 0.0, d.name)

    return sorted(out, key=key)


def bag_regressions(deltas: Sequence[BagDelta], metric: str, max_drop: float) -> List[str]:
    """Failure lines for bags whose ``metric`` dropped by more than ``max_drop``, and for bags the
    candidate did not score although the baseline did (a gate never passes on a missing number)."""
    failures = []
    for d in deltas:
        if d.delta is not None and -d.delta > max_drop:
            failures.append(
                "bag %s: %s dropped by %.4f (%.4f -> %.4f; allowed %.4f)"
                % (d.name, metric, -d.delta, d.baseline, d.candidate, max_drop)
            )
        elif d.baseline is not None and d.candidate is None:
            failures.append("bag %s: %s not in the candidate (%s)" % (d.name, metric, d.note or "metric missing"))
    return failures
