"""Copies under random edit chains: how well a model separates copies from look-alikes when
the edits are not the eval's fixed families.

    library  every video of the chosen side, embedded as ingest does (borders removed)
    queries  `per_group` random edit chains (copy_edits.random_edit: 2-5 of crop, rescale,
             grade, grey, blur, noise, borders, captions, frame rate, trim, re-encode) of one
             clip per group
    per query, against the library:
      copy score of a video  cosine - mean of the query's k best cosines to OTHER groups
      top-1        the best video is of the query's group (a copy of its own recording)
      non-copy     the query's best copy score among other groups (what it scores when its
                   source is not in the library: leave-one-group-out)
      copy         its copy score to its own source
    AUC          P(copy score of a copy > best score of a non-copy), over all pairs
    recall@1%FPR share of queries whose top-1 is right AND whose copy score clears the 99th
                 percentile of the non-copy scores (the threshold a calibration would pick)

This is the study that chose PCA whitening (sora_encoder/whitening.py); it runs on the train
side by default, where the models were fitted, so compare models with it, and use
`sora eval neardup` (test side, fixed families, distractors, anchors) to report.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sora_encoder.copy_edits import apply_edit, random_edit
from sora_encoder.files import LabelledVideo
from sora_encoder.media import MediaError, probe

__all__ = ["DEFAULT_K", "edit_queries", "edit_study_metrics", "run_edit_study"]

DEFAULT_K = 10
FPR = 0.01


def _group(it: LabelledVideo) -> str:
    return it.group if it.group is not None else f"file:{it.path}"  # ungrouped: its own


def edit_queries(
    items: Sequence[LabelledVideo], work_dir: str | Path, *, per_group: int = 2, seed: int = 7
) -> list[tuple[int, Path, str]]:
    """(index of the source in `items`, edited file, edit names) for `per_group` edits of the
    first clip of every group; files already in `work_dir` are reused (same seed, same
    edits). A source ffmpeg cannot edit is skipped."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    first: dict[str, int] = {}
    for i, it in enumerate(items):
        first.setdefault(_group(it), i)
    out = []
    for group in sorted(first):
        i = first[group]
        try:
            info = probe(items[i].path)
        except MediaError:
            continue
        for j in range(per_group):
            edit = random_edit(info, rng)  # drawn even when the file exists: same sequence
            dst = work / f"{items[i].path.stem[:40]}.{i}.{j}.mp4"
            if not dst.is_file():
                try:
                    apply_edit(items[i].path, dst, edit)
                except RuntimeError:
                    continue
            out.append((i, dst, "+".join(edit.names)))
    return out


def edit_study_metrics(
    library: np.ndarray, groups: Sequence[str], queries: np.ndarray, sources: Sequence[int],
    *, k: int = DEFAULT_K,
) -> dict[str, float]:  # fmt: skip
    """The module docstring's metrics from unit vectors: library (N, D), queries (Q, D),
    sources (Q,) indices into the library."""
    g = np.asarray(groups, dtype=object)
    copy, non_copy, top_ok = [], [], []
    for q, src in zip(queries, sources, strict=True):
        sims = library @ q  # (N,)
        others = sims[g != g[src]]
        reference = np.sort(others)[-k:].mean()
        non_copy.append(others.max() - reference)
        copy.append(sims[src] - reference)
        top_ok.append(g[int(np.argmax(sims))] == g[src])
    c, n, ok = np.asarray(copy), np.asarray(non_copy), np.asarray(top_ok)
    threshold = np.quantile(n, 1 - FPR)
    return {
        "queries": int(c.size),
        "top1": float(ok.mean()),
        "auc": float((c[:, None] > n[None, :]).mean()),
        "recall@fpr1%": float(((c >= threshold) & ok).mean()),
    }


def run_edit_study(
    items: Sequence[LabelledVideo],
    embedders: Mapping[str, Any],
    work_dir: str | Path,
    *,
    per_group: int = 2,
    seed: int = 7,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Embed the library and the edited queries with each `VideoEmbedder` in `embedders`
    ({name: embedder}); {"setup": ..., "metrics": {name: metrics}}. A file an embedder
    cannot read is left out of the library (a query of it is dropped too)."""
    queries = edit_queries(items, work_dir, per_group=per_group, seed=seed)
    metrics = {}
    for name, embedder in embedders.items():
        lib, lib_idx = [], {}
        for n, it in enumerate(items):
            try:
                lib.append(embedder.embed(it.path).vector)
                lib_idx[n] = len(lib) - 1
            except MediaError:
                pass
            if progress:
                progress(f"{name} library", n + 1, len(items))
        qv, src = [], []
        for n, (i, path, _) in enumerate(queries):
            if i in lib_idx:
                try:
                    qv.append(embedder.embed(path).vector)
                    src.append(lib_idx[i])
                except MediaError:
                    pass
            if progress:
                progress(f"{name} queries", n + 1, len(queries))
        kept = [_group(items[i]) for i in sorted(lib_idx)]
        metrics[name] = edit_study_metrics(np.stack(lib), kept, np.stack(qv), src)
        metrics[name]["model_version"] = embedder.model_version
    edits: dict[str, int] = {}
    for _, _, names in queries:
        for e in names.split("+"):
            edits[e] = edits.get(e, 0) + 1
    setup = {"library": len(items), "queries": len(queries), "per_group": per_group,
             "seed": seed, "edits": dict(sorted(edits.items()))}  # fmt: skip
    return {"command": "edits", "setup": setup, "metrics": metrics}
