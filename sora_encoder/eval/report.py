"""Reports of the evaluations: Markdown tables, JSON, and the confusion-matrix PNG.

neardup_markdown(result)  one table per metric (recall@1, recall@10, mAP over the copy
                          queries; micro-AP over copies and non-copies): rows =
                          transformation families + "all", columns = embedders; then
                          precision / recall at each embedder's declared copy threshold
classify_markdown(result) rows = tasks, columns = embedders, "accuracy / macro-F1"
confusion_image(result)   a grid of panels, rows = tasks, columns = embedders; each
                          panel: rows true labels, columns predicted, shade = row share
write_json(path, obj)     sorted keys, atomically
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from sora_encoder.eval.png import Canvas

__all__ = [
    "classify_markdown",
    "confusion_image",
    "neardup_markdown",
    "write_json",
    "write_text",
]

NEARDUP_METRICS = (("recall@1", "recall@1"), ("recall@10", "recall@10"), ("mAP", "mAP"))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _embedder_headers(embedders: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in embedders]


def _embedder_legend(embedders: list[dict[str, Any]]) -> str:
    seen: dict[str, str] = {}
    parts = []
    for e in embedders:
        same = f" (same weights as `{seen[e['key']]}`)" if e["key"] in seen else ""
        seen.setdefault(e["key"], e["name"])
        kind = f"{e['dim']}-d" if e.get("dim") else "its own matching rule"
        t = e.get("copy_threshold")
        thr = f", copy threshold {t:g}" if t is not None else ""
        parts.append(f"`{e['name']}` = {e['key']}, {kind}{thr}{same}")
    return "Embedders: " + "; ".join(parts) + "."


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def neardup_markdown(result: Any) -> str:
    """Markdown tables of a `NeardupResult` (or its JSON dict)."""
    r = result if isinstance(result, dict) else result.to_json()
    names = _embedder_headers(r["embedders"])
    families = [f["name"] for f in r["families"]]
    any_metrics = next(iter(r["metrics"].values()), {})
    rows_order = [f for f in families if f in any_metrics] + (
        ["all"] if "all" in any_metrics else []
    )
    s = r["setup"]
    n_non = s.get("non_copies", 0)
    held = (
        f", {n_non} non-copy originals (groups {', '.join(s.get('non_copy_groups', []))} held "
        "out of the database whole: their copies are queries with nothing to find)"
        if n_non
        else ""
    )
    out = [
        f"Near-duplicate retrieval: {s['originals']} originals ({s['side']} side, one clip per "
        f"group){held}, database of {s['database']} videos ({s['distractors']} distractors "
        f"from the other side), {len(families)} families; video vectors, exact search "
        "(anchors: their own hashes and matching rule).",
        "",
        _embedder_legend(r["embedders"]),
    ]
    if r.get("skipped_embedders"):
        why = "; ".join(f"`{k}`: {v}" for k, v in r["skipped_embedders"].items())
        out += ["", f"Not run: {why}."]
    for key, title in NEARDUP_METRICS:
        rows = []
        for fam in rows_order:
            cells = [
                f"{r['metrics'][n][fam][key]:.3f}" if fam in r["metrics"][n] else "-" for n in names
            ]
            q = any_metrics[fam]["queries"]
            rows.append([f"**{fam}**" if fam == "all" else fam, str(q), *cells])
        out += ["", f"**{title}**", "", _table(["family", "queries", *names], rows)]
    out += _micro_ap_tables(r, names, rows_order, any_metrics)
    out += _boundary_table(r, rows_order)
    notes = [f"`{f['name']}`: {f['note']}" for f in r["families"] if f.get("note")]
    if notes:
        out += ["", "Notes: " + "; ".join(notes) + "."]
    if r.get("failed"):
        out += ["", f"Failed ({len(r['failed'])}), counted as misses:"]
        out += [f"- {k}: {v}" for k, v in sorted(r["failed"].items())]
    return "\n".join(out) + "\n"


def _boundary_table(r: dict[str, Any], rows_order: list[str]) -> list[str]:
    """Matched-range error of the embedders that report ranges (the service), on the
    families that cut."""
    rows = []
    for n, per_family in r["metrics"].items():
        for fam in rows_order:
            m = per_family.get(fam, {})
            if "boundaries" in m:
                rows.append([n, fam, str(m["boundaries"]),
                             f"{m['boundary_error_median_s']:.2f}",
                             _ratio(m["boundary_within_1s"])])  # fmt: skip
    if not rows:
        return []
    return [
        "",
        "**matched range vs the truth** (families that cut; both boundaries of each query "
        "whose top hit is its source)",
        "",
        _table(["embedder", "family", "boundaries", "median error s", "within 1 s"], rows),
    ]


def _micro_ap_tables(
    r: dict[str, Any], names: list[str], rows_order: list[str], any_metrics: dict[str, Any]
) -> list[str]:
    """The micro-AP table and, for embedders with a copy threshold, precision / recall."""
    if not rows_order or "micro_AP" not in any_metrics[rows_order[0]]:
        return []  # a result written before micro-AP existed
    rows = []
    for fam in rows_order:
        m0 = any_metrics[fam]
        cells = [
            _ratio(r["metrics"][n][fam]["micro_AP"]) if fam in r["metrics"][n] else "-"
            for n in names
        ]
        q = f"{m0['queries']} + {m0['non_copy_queries']}"
        rows.append([f"**{fam}**" if fam == "all" else fam, q, *cells])
    out = [
        "",
        "**micro-AP** (one prediction per query, its top hit and score, ranked over all "
        "queries; queries = copies + non-copies, and a non-copy's hit is always wrong)",
        "",
        _table(["family", "queries", *names], rows),
    ]
    with_t = [e["name"] for e in r["embedders"] if e.get("copy_threshold") is not None]
    if with_t and "all" in any_metrics:
        rows = []
        for n in with_t:
            m = r["metrics"][n]["all"]
            rows.append(
                [
                    n,
                    f"{m['threshold']:g}",
                    str(m["predicted@threshold"]),
                    _ratio(m["precision@threshold"]),
                    _ratio(m["recall@threshold"]),
                ]
            )
        out += [
            "",
            "**at the embedder's copy threshold** (all families: a top hit scoring at least "
            "the threshold is called a copy)",
            "",
            _table(["embedder", "threshold", "called copies", "precision", "recall"], rows),
        ]
    return out


def classify_markdown(result: Any) -> str:
    """Markdown tables of a `ClassifyResult` (or its JSON dict)."""
    r = result if isinstance(result, dict) else result.to_json()
    names = _embedder_headers(r["embedders"])
    s = r["setup"]
    out = [
        f"Classification on frozen vectors: heads fitted on the train-side groups "
        f"({s['groups_train']}), scored on the test-side groups ({s['groups_test']}); "
        f"split_of(group, test_fraction={s['test_fraction']}, salt={s['salt']!r}).",
        "",
        _embedder_legend(r["embedders"]),
        "",
        "**accuracy / macro-F1 on the test side**",
        "",
    ]
    rows = []
    for task in r["tasks"]:
        t = task["name"]
        first = r["metrics"][names[0]][t]
        test = ", ".join(f"{y} {c}" for y, c in first["test_counts"].items())
        cells = [
            f"{r['metrics'][n][t]['accuracy']:.3f} / {r['metrics'][n][t]['macro_f1']:.3f}"
            for n in names
        ]
        rows.append([t, str(first["train_examples"]), test, *cells])
    out.append(_table(["task", "train", "test", *names], rows))
    if s.get("folds"):
        cv_rows = [
            [t["name"], str(r["metrics"][names[0]][t["name"]]["cv"]["examples"])]
            + [
                f"{r['metrics'][n][t['name']]['cv']['accuracy']:.3f} / "
                f"{r['metrics'][n][t['name']]['cv']['macro_f1']:.3f}"
                for n in names
            ]
            for t in r["tasks"]
            if "cv" in r["metrics"][names[0]][t["name"]]
        ]
        out += [
            "",
            f"**accuracy / macro-F1, grouped {s['folds']}-fold cross-validation over every "
            "clip** (train-side clips included: the encoder saw them, never their labels)",
            "",
            _table(["task", "clips", *names], cv_rows),
        ]
    out += ["", "Confusion matrices (rows true, columns predicted):", ""]
    for task in r["tasks"]:
        t = task["name"]
        for n in names:
            m = r["metrics"][n][t]
            cm = "; ".join(
                f"{y}: " + " ".join(str(c) for c in row)
                for y, row in zip(m["labels"], m["confusion"], strict=True)
            )
            out.append(f"- {t} / {n}: [{' '.join(m['labels'])}] {cm}")
    if r.get("failed"):
        out += ["", f"Skipped ({len(r['failed'])}): files that could not be decoded:"]
        out += [f"- {k}: {v}" for k, v in sorted(r["failed"].items())]
    return "\n".join(out) + "\n"


def _shade(frac: float) -> tuple[int, int, int]:
    """White (0) to a dark blue (1)."""
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])
    return tuple(int(v) for v in np.round(lo + (hi - lo) * min(max(frac, 0.0), 1.0)))


def confusion_image(result: Any, *, cell: int = 44, scale: int = 2) -> np.ndarray:
    """uint8 (H, W, 3): one confusion-matrix panel per (task, embedder)."""
    r = result if isinstance(result, dict) else result.to_json()
    names = _embedder_headers(r["embedders"])
    tasks = [t["name"] for t in r["tasks"]]
    line = Canvas.text_size("X", scale)[1] + 6
    max_labels = max(len(t["labels"]) for t in r["tasks"])
    label_w = max(
        Canvas.text_size(f"{k + 1} {y}", scale)[0]
        for t in r["tasks"]
        for k, y in enumerate(t["labels"])
    )
    title_w = max(Canvas.text_size(f"{t} / {n}", scale)[0] for t in tasks for n in names)
    pad = 16
    panel_w = (
        max(
            label_w + 8 + max_labels * cell,
            title_w,
            Canvas.text_size("ACC 0.000  F1 0.000", scale)[0],
        )
        + 2 * pad
    )
    panel_h = 3 * line + max_labels * cell + line + 2 * pad
    footer = line + pad
    legend = "ROWS: TRUE LABEL.  COLUMNS: PREDICTED (NUMBERED AS THE ROWS)."
    width = max(panel_w * len(names), Canvas.text_size(legend, scale)[0] + 2 * pad)
    canvas = Canvas(width, panel_h * len(tasks) + footer)
    for ti, t in enumerate(tasks):
        for ei, n in enumerate(names):
            m = r["metrics"][n][t]
            x0, y0 = ei * panel_w + pad, ti * panel_h + pad
            canvas.text(x0, y0, f"{t} / {n}", scale=scale)
            score = f"ACC {m['accuracy']:.3f}  F1 {m['macro_f1']:.3f}"
            canvas.text(x0, y0 + line, score, (60, 60, 60), scale=scale)
            cm = np.asarray(m["confusion"], dtype=np.int64)
            labels = m["labels"]
            gx, gy = x0 + label_w + 8, y0 + 3 * line
            for j in range(len(labels)):  # column numbers
                canvas.text(
                    gx + j * cell + cell // 2 - scale * 3, gy - line, str(j + 1), scale=scale
                )
            for i, y in enumerate(labels):
                canvas.text(
                    x0, gy + i * cell + (cell - 7 * scale) // 2, f"{i + 1} {y}", scale=scale
                )
                total = max(1, int(cm[i].sum()))
                for j in range(len(labels)):
                    frac = cm[i, j] / total
                    colour = _shade(frac)
                    canvas.rect(gx + j * cell, gy + i * cell, cell - 2, cell - 2, colour)
                    s = str(int(cm[i, j]))
                    tw, th = Canvas.text_size(s, scale)
                    ink = (255, 255, 255) if frac > 0.5 else (0, 0, 0)
                    cx = gx + j * cell + (cell - 2 - tw) // 2
                    cy = gy + i * cell + (cell - 2 - th) // 2
                    canvas.text(cx, cy, s, ink, scale=scale)
    canvas.text(pad, panel_h * len(tasks), legend, (90, 90, 90), scale=scale)
    return canvas.pixels


def write_text(path: str | os.PathLike, text: str) -> None:
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")
