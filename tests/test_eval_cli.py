"""`sora eval neardup` and `sora eval classify` end to end on a tiny generated, labelled set
(seed-initialised sora-t), and the reports they write: JSON, Markdown, PNG."""

from __future__ import annotations

import importlib.util
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from sora_cli.main import main
from sora_encoder.eval.png import Canvas, encode_png
from sora_encoder.eval.splits import split_of
from tests.media_factory import make_video

SOURCES = {
    "a": ["testsrc2", "smptebars", "rgbtestsrc", "mandelbrot"],
    "b": ["life", "cellauto", "testsrc", "yuvtestsrc"],
}
EMBEDDERS = ["sora", "untrained", "cnn_mean", "tiny_image"]


def _groups(n_train: int, n_test: int, prefix: str) -> list[str]:
    """Group names that the default split puts n_train on train and n_test on test."""
    train, test, k = [], [], 0
    while len(train) < n_train or len(test) < n_test:
        g = f"{prefix}{k}"
        side = train if split_of(g) == "train" else test
        if len(side) < (n_train if side is train else n_test):
            side.append(g)
        k += 1
    return test + train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evalset")
    rows = ["path,label,group,duration_s"]
    for label, sources in SOURCES.items():
        (root / label).mkdir()
        for source, group in zip(sources, _groups(3, 1, label), strict=True):
            rel = f"{label}/{source}.mp4"
            make_video(root / rel, duration_s=1.5, fps=12, size=(96, 72), source=source)
            rows.append(f"{rel},{label},{group},1.5")
    (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return root


def _read_png(data: bytes) -> np.ndarray:
    """A minimal reader for what `encode_png` writes (RGB, 8 bits, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, colour = size[:4]
    assert (depth, colour) == (8, 2)
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def test_png_round_trip_and_text() -> None:
    c = Canvas(40, 12)
    c.text(1, 1, "AB 0.5", scale=1)
    c.rect(30, 0, 5, 5, (255, 0, 0))
    img = _read_png(encode_png(c.pixels))
    assert np.array_equal(img, c.pixels)
    assert (img[:5, 30:35] == [255, 0, 0]).all() and (img[1:8, 1:6] == 0).any()


def test_neardup_end_to_end(dataset: Path, tmp_path: Path, capsys) -> None:
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    families = "reencode,flip,trim,pip,crop+bright+reencode"
    rc = main(["eval", "neardup", str(dataset), "--variant", "sora-t", "--families", families,
               "--json", str(out_json), "--markdown", str(out_md), "--quiet"])  # fmt: skip
    assert rc == 0
    r = json.loads(out_json.read_text())
    assert r["setup"]["originals"] == 2  # one per test-side group
    assert r["setup"]["database"] == 8 and r["setup"]["distractors"] == 6
    # vpdq runs by default when its optional package is installed, else it is skipped
    with_vpdq = importlib.util.find_spec("vpdq") is not None
    assert [e["name"] for e in r["embedders"]] == EMBEDDERS + ["vpdq"] * with_vpdq
    assert list(r["skipped_embedders"]) == [] if with_vpdq else ["vpdq"]
    assert r["failed"] == {}
    for name in EMBEDDERS:
        rows = r["metrics"][name]
        assert set(rows) == {*families.split(","), "all"}
        for fam, m in rows.items():
            assert 0 <= m["recall@1"] <= m["recall@10"] <= 1 and 0 < m["mAP"] <= 1, fam
            assert m["queries"] == (10 if fam == "all" else 2)
            assert m["recall@10"] == 1.0  # 8 videos in the database
    # the re-encoded copy of a synthetic picture is found by the pixel baseline
    assert r["metrics"]["tiny_image"]["reencode"]["recall@1"] == 1.0
    md = out_md.read_text()
    assert "**recall@1**" in md and "| pip | 2 |" in md and "same weights as `sora`" in md
    assert "**recall@1**" in capsys.readouterr().out


def test_neardup_non_copies_and_anchors(dataset: Path, tmp_path: Path, capsys) -> None:
    """One of the two test groups held out: its copies have nothing to find. micro-AP
    counts them; an anchor runs when installed and is skipped with the reason when not."""
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    rc = main(["eval", "neardup", str(dataset), "--families", "reencode,flip",
               "--embedders", "tiny_image,vpdq", "--non-copies", "1",
               "--json", str(out_json), "--markdown", str(out_md), "--quiet"])  # fmt: skip
    assert rc == 0
    r = json.loads(out_json.read_text())
    s = r["setup"]
    assert (s["originals"], s["non_copies"]) == (1, 1)
    held = s["non_copy_groups"][0]
    assert s["database"] == 7  # the held-out group's one clip is not in the database
    for fam in ("reencode", "flip", "all"):
        m = r["metrics"]["tiny_image"][fam]
        n = 2 if fam == "all" else 1
        assert (m["queries"], m["non_copy_queries"]) == (n, n)
        assert 0 <= m["micro_AP"] <= m["recall@1"]  # a wrong hit can only cost precision
        assert "precision@threshold" not in m  # tiny_image declares no copy threshold
    # the re-encoded copy is found; the non-copy's top hit is wrong, and it scores below it
    assert r["metrics"]["tiny_image"]["reencode"]["micro_AP"] == 1.0
    md = out_md.read_text()
    assert "**micro-AP**" in md and "| reencode | 1 + 1 |" in md and f"groups {held}" in md
    if importlib.util.find_spec("vpdq") is None:
        assert [e["name"] for e in r["embedders"]] == ["tiny_image"]
        assert "not installed" in r["skipped_embedders"]["vpdq"]
        assert "skipping vpdq" in capsys.readouterr().err
    else:
        m = r["metrics"]["vpdq"]["all"]
        assert m["threshold"] == 0.8 and m["predicted@threshold"] <= 4
        assert m["recall@threshold"] <= m["recall@1"]
        assert "**at the embedder's copy threshold**" in md


def test_neardup_scores_sora_by_its_copy_calibration_and_a_candidate_beside_it(
    dataset: Path, tmp_path: Path
) -> None:
    """`sora` with a calibration is scored by copy scores (same rankings, a threshold and
    precision/recall at it); `--candidate` runs a second checkpoint in the same run."""
    from sora_encoder.checkpoint import save_checkpoint
    from sora_encoder.copy_score import build_calibration
    from sora_encoder.factory import create_model
    from sora_encoder.registry import get_model_config

    config = get_model_config("sora-t")
    model = create_model(config)
    calibrated, plain = tmp_path / "calibrated", tmp_path / "plain"
    version = save_checkpoint(model, config, calibrated)
    save_checkpoint(model, config, plain)
    rng = np.random.default_rng(0)
    bg = rng.normal(size=(12, config.projection.out_dim)).astype(np.float32)
    bg /= np.linalg.norm(bg, axis=1, keepdims=True)
    cal = build_calibration(version, bg, [b[None] for b in bg], [str(i) for i in range(12)])
    cal.save(calibrated)
    out_json = tmp_path / "n.json"
    rc = main(["eval", "neardup", str(dataset), "--checkpoint", str(calibrated),
               "--candidate", str(plain), "--embedders", "sora,tiny_image",
               "--families", "reencode,flip", "--non-copies", "1",
               "--json", str(out_json), "--quiet"])  # fmt: skip
    assert rc == 0
    r = json.loads(out_json.read_text())
    names = {e["name"]: e for e in r["embedders"]}
    assert list(names) == ["sora", "candidate", "tiny_image"]
    assert names["sora"]["copy_threshold"] == pytest.approx(cal.threshold)
    assert names["candidate"]["copy_threshold"] is None  # no calibration in its folder
    sora, cand = r["metrics"]["sora"]["all"], r["metrics"]["candidate"]["all"]
    for k in ("recall@1", "recall@10", "mAP"):  # per-query shifts keep every ranking
        assert sora[k] == pytest.approx(cand[k]), k
    assert "recall@threshold" in sora and "recall@threshold" not in cand


def test_classify_end_to_end(dataset: Path, tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "c.json", tmp_path / "c.png"
    rc = main(["eval", "classify", str(dataset), "--manifest", str(dataset / "MANIFEST.csv"),
               "--variant", "sora-t", "--json", str(out_json), "--png", str(out_png),
               "--folds", "2", "--quiet"])  # fmt: skip
    assert rc == 0
    r = json.loads(out_json.read_text())
    assert r["setup"]["folds"] == 2
    assert [t["name"] for t in r["tasks"]] == ["a_vs_b", "time_reversal"]
    for name in EMBEDDERS:
        task = r["metrics"][name]["a_vs_b"]
        assert task["train_examples"] == 6 and task["test_examples"] == 2
        assert np.array(task["confusion"]).sum() == 2
        assert 0 <= task["accuracy"] <= 1 and 0 <= task["macro_f1"] <= 1
        cv = task["cv"]  # every clip once, less a fold whose training lacked a label
        assert 1 <= cv["examples"] <= 8 and np.array(cv["confusion"]).sum() == cv["examples"]
        tr = r["metrics"][name]["time_reversal"]
        assert tr["test_counts"] == {"forward": 2, "reversed": 2}
    # mean pooling cannot tell a clip from its reversal: both get one vector, one answer
    assert r["metrics"]["cnn_mean"]["time_reversal"]["accuracy"] == 0.5
    img = _read_png(out_png.read_bytes())
    assert img.shape[0] > 100 and img.shape[1] > 4 * 100  # 2 tasks x 4 embedders
    assert (img < 100).any()  # dark cells or text were drawn


def test_classify_with_labels_and_errors(dataset: Path, capsys) -> None:
    manifest = str(dataset / "MANIFEST.csv")
    rc = main(["eval", "classify", str(dataset), "--manifest", manifest, "--labels", "a,zzz",
               "--variant", "sora-t", "--quiet"])  # fmt: skip
    assert rc == 2 and "zzz" in capsys.readouterr().err
    rc = main(["eval", "neardup", str(dataset), "--families", "sepia", "--quiet"])
    assert rc == 2 and "sepia" in capsys.readouterr().err
