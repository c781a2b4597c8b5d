"""Evaluation reports: JSON, Markdown and PNG plots, headline metrics, comparisons and CI gates.

Plots use matplotlib's Agg backend (no display needed): PR curves at IoU 0.5 per class, the
detection confusion matrix with its background row/column, and the live latency histogram.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dl_vision.errors import EvaluationError

#: Metrics where a smaller value is better (a gate on them is an upper bound).
LOWER_IS_BETTER = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "dropped_fraction")


def headline_metrics(report: Dict[str, Any]) -> Dict[str, float]:
    """The report's scalar metrics under short names (``mAP``, ``AP50``, ``mIoU``, ``AP/face`` ...).

    Undefined metrics (``None`` in the report) are left out.
    """
    out: Dict[str, Optional[float]] = {}
    det = report.get("detection")
    if det:
        bbox = det["bbox"]
        out.update({"mAP": bbox["mAP"], "AP50": bbox["AP50"], "AP75": bbox["AP75"], "AR100": bbox["AR100"]})
        for name, ap in bbox["per_class_ap"].items():
            out["AP/" + name] = ap
        if "segm" in det:
            out.update({"mask_mAP": det["segm"]["mAP"], "mask_AP50": det["segm"]["AP50"]})
        conf = det["confusion"]
        out.update({"precision": conf["precision"], "recall": conf["recall"], "f1": conf["f1"]})
    seg = report.get("segmentation")
    if seg:
        out.update({"mIoU": seg["mean_iou"], "pixel_accuracy": seg["pixel_accuracy"]})
        for name, iou in seg["per_class_iou"].items():
            out["IoU/" + name] = iou
    throughput = report.get("throughput") or {}
    out["fps"] = throughput.get("frames_per_s")
    live = report.get("live")
    if live:
        latency = live.get("latency_ms") or {}
        for key in ("mean", "p50", "p95", "p99"):
            out["latency_%s_ms" % key] = latency.get(key)
        out["dropped_fraction"] = live.get("dropped_fraction")
        out["fps"] = live.get("output_rate_hz")
    return {k: float(v) for k, v in out.items() if v is not None}


def write_report(report: Dict[str, Any], out_dir) -> Dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``.

    Returns:
        ``{kind: path}`` of the written files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "markdown": out / "report.md"}
    files["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    files.update(_plots(report, out))
    files["markdown"].write_text(markdown(report, {k: p.name for k, p in files.items() if p.suffix == ".png"}))
    return files


def load_report(path) -> Dict[str, Any]:
    """Read a ``report.json`` (or the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise EvaluationError("report: expected a report.json at %s (%s)" % (path, err)) from err


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "%.4f" % value
    return str(value)


def markdown(report: Dict[str, Any], plots: Optional[Dict[str, str]] = None) -> str:
    """The report as a Markdown document (headline table, per-class tables, confusion matrix, plots)."""
    source = report.get("source", {})
    lines = ["# Evaluation report (%s)" % report.get("mode", "offline"), ""]
    lines += [
        "- bag: `%s`, topic `%s`" % (source.get("bag"), source.get("image_topic")),
        "- model: `%s`" % report.get("model"),
        "- frames: %s" % ", ".join("%s %s" % (k, v) for k, v in report.get("frames", {}).items()),
        "",
    ]
    lines += ["| metric | value |", "|---|---|"]
    lines += ["| %s | %s |" % (k, _fmt(v)) for k, v in headline_metrics(report).items()]
    det = report.get("detection")
    if det:
        conf = det["confusion"]
        lines += [
            "",
            "## Confusion matrix (score >= %.2f, IoU >= %.2f; rows ground truth, columns predicted)"
            % (conf["score_threshold"], conf["iou_threshold"]),
            "",
        ]
        lines += ["| | " + " | ".join(conf["labels"]) + " |", "|---" * (len(conf["labels"]) + 1) + "|"]
        for label, row in zip(conf["labels"], conf["matrix"]):
            lines.append("| **%s** | %s |" % (label, " | ".join(str(v) for v in row)))
        lines += ["", "| class | AP | AP50 | precision | recall | F1 |", "|---|---|---|---|---|---|"]
        for name, ap in det["bbox"]["per_class_ap"].items():
            pc = conf["per_class"].get(name, {})
            lines.append(
                "| %s | %s | %s | %s | %s | %s |"
                % (
                    name,
                    _fmt(ap),
                    _fmt(det["bbox"]["per_class_ap50"][name]),
                    _fmt(pc.get("precision")),
                    _fmt(pc.get("recall")),
                    _fmt(pc.get("f1")),
                )
            )
    seg = report.get("segmentation")
    if seg:
        lines += [
            "",
            "## Segmentation (%d frames, %d scored pixels)" % (seg["frames"], seg["pixels"]),
            "",
            "| class | IoU |",
            "|---|---|",
        ]
        lines += ["| %s | %s |" % (name, _fmt(iou)) for name, iou in seg["per_class_iou"].items()]
    live = report.get("live")
    if live:
        lines += [
            "",
            "## Live run",
            "",
            "- frames: %d received, %d processed, %d dropped (%.1f%%); output rate %s Hz"
            % (
                live["received_frames"],
                live["processed"],
                live["dropped"],
                100 * live["dropped_fraction"],
                _fmt(live["output_rate_hz"]),
            ),
            "- end-to-end latency ms: " + ", ".join("%s %.1f" % (k, v) for k, v in live["latency_ms"].items()),
        ]
    stages = (report.get("throughput") or {}).get("stage_ms_mean")
    if stages:
        lines += ["", "Model stages, mean ms per frame: " + ", ".join("%s %.2f" % kv for kv in sorted(stages.items()))]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + ["- " + w for w in report["warnings"]]
    for kind, name in sorted((plots or {}).items()):
        lines += ["", "![%s](%s)" % (kind, name)]
    return "\n".join(lines) + "\n"


def _plots(report: Dict[str, Any], out: Path) -> Dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    files: Dict[str, Path] = {}
    det = report.get("detection")
    if det and det["bbox"]["pr_curve_iou50"]:
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, curve in det["bbox"]["pr_curve_iou50"].items():
            label = "%s (AP50 %.3f)" % (name, det["bbox"]["per_class_ap50"][name])
            ax.plot(curve["recall"], curve["precision"], label=label)
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curves, IoU 0.5")
        ax.legend(loc="lower left", fontsize="small")
        files["pr_curves"] = _save(fig, out / "pr_curves.png", plt)
    if det:
        conf = det["confusion"]
        labels = conf["labels"]
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
        ax.imshow(conf["matrix"], cmap="Blues")
        for r, row in enumerate(conf["matrix"]):
            for c, value in enumerate(row):
                ax.text(c, r, str(value), ha="center", va="center", fontsize="small")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set(xlabel="predicted", ylabel="ground truth", title="confusion matrix")
        files["confusion_matrix"] = _save(fig, out / "confusion_matrix.png", plt)
    latencies = (report.get("live") or {}).get("latencies_ms")
    if latencies:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(latencies, bins=min(50, max(5, len(latencies) // 5)))
        ax.set(xlabel="end-to-end latency (ms)", ylabel="frames", title="live latency")
        files["latency_histogram"] = _save(fig, out / "latency_histogram.png", plt)
    return files


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(
    baseline: Dict[str, Any], candidate: Dict[str, Any]
) -> List[Tuple[str, Optional[float], Optional[float], Optional[float]]]:
    """Rows ``(metric, baseline, candidate, candidate - baseline)`` over the union of headline metrics."""
    base, cand = headline_metrics(baseline), headline_metrics(candidate)
    rows = []
    for name in list(base) + [n for n in cand if n not in base]:
        b, c = base.get(name), cand.get(name)
        rows.append((name, b, c, None if b is None or c is None else c - b))
    return rows


def parse_gates(specs: Sequence[str]) -> Dict[str, float]:
    """``["mAP=0.5", "AP50=0.8"]`` -> ``{"mAP": 0.5, "AP50": 0.8}``.

    Raises:
        EvaluationError: an item is not ``metric=number``.
    """
    gates = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            gates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise EvaluationError("--fail-under: expected metric=number (e.g. mAP=0.5), found %r" % spec)
    return gates


def check_gates(report: Dict[str, Any], gates: Dict[str, float]) -> List[str]:
    """Failed gates as messages; empty when all pass.

    A metric passes when it is at least its value (at most, for latencies and drop fraction).
    A gate on a metric the report does not have fails (a missing number is never a pass).
    """
    metrics = headline_metrics(report)
    failures = []
    for name, limit in gates.items():
        value = metrics.get(name)
        if value is None:
            failures.append("%s: not in the report (have: %s)" % (name, ", ".join(sorted(metrics))))
        elif name in LOWER_IS_BETTER and value > limit:
            failures.append("%s = %.4f is above the limit %.4f" % (name, value, limit))
        elif name not in LOWER_IS_BETTER and value < limit:
            failures.append("%s = %.4f is under the floor %.4f" % (name, value, limit))
    return failures
