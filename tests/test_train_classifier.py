"""`sora train classifier`: labelled files -> a head (frozen vectors or fine-tuned encoder)
-> a file, the SQL store, and the API's classify call.

The videos are tiny lavfi renders; each label has two sources of its own (testsrc2 and
testsrc for "pattern", mandelbrot and life for "fractal"), different enough that even the
seed-initialised sora-t separates them (checked: holdout accuracy 1.0 for split seeds 0-4).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

from sora_cli.main import main
from sora_encoder.heads.dataset import holdout_split, read_csv, read_folder
from sora_encoder.heads.offline import read_head_file
from sora_encoder.heads.softmax import TrainedHead, train_head
from tests.media_factory import make_video

VARIANT = "sora-t"  # 4 frames of 32 px: cheap, and the pipeline is the same for every variant
SOURCES = {"pattern": ("testsrc2", "testsrc"), "fractal": ("mandelbrot", "life")}
PER_LABEL = 6


@pytest.fixture(autouse=True)
def _service_env(monkeypatch, tmp_path):
    # fp32: the CPU precision calibration could pick bf16 on one run and fp32 on the next.
    monkeypatch.setenv("SORA_PRECISION", "fp32")
    monkeypatch.setenv("SORA_HOME", str(tmp_path / "home"))
    for name in ("SORA_CHECKPOINT", "SORA_VARIANT", "SORA_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """DIR/<label>/*.mp4, plus labels.csv (path,label, the same files) and grouped.csv
    (path,label,group: two videos per group) beside the label folders."""
    root = tmp_path_factory.mktemp("labelled")
    rows = []
    for label, sources in sorted(SOURCES.items()):
        (root / label).mkdir()
        for i in range(PER_LABEL):
            path = root / label / f"{label}{i}.mp4"
            make_video(path, duration_s=1.5 + 0.7 * i, size=(64, 48), fps=10, source=sources[i % 2])
            rows.append((f"{label}/{path.name}", label, f"{label}-{i // 2}"))
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *[r[:2] for r in rows]])
    with (root / "grouped.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "group"), *rows])
    return root


def sora(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["train", "classifier", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- data ---------------------------------------------------------------------------------------
def test_folder_and_csv_give_the_same_examples(data):
    folder = read_folder(data)
    assert len(folder) == 2 * PER_LABEL
    assert {e.label for e in folder} == set(SOURCES)
    assert read_csv(data / "labels.csv") == folder  # same files, labels, order; no groups
    grouped = read_csv(data / "grouped.csv")
    assert [(e.path, e.label) for e in grouped] == [(e.path, e.label) for e in folder]


def test_groups_never_straddle_the_holdout_and_match_train_head(data):
    examples = read_csv(data / "grouped.csv")
    train, holdout = holdout_split(examples, holdout_fraction=0.25, seed=3)
    side = {i: "holdout" for i in holdout} | {i: "train" for i in train}
    by_group: dict[str, set[str]] = {}
    for i, e in enumerate(examples):
        by_group.setdefault(e.group, set()).add(side[i])
    assert all(len(sides) == 1 for sides in by_group.values()), by_group
    assert {examples[i].label for i in holdout} == set(SOURCES)
    # train_head draws the same split from the same labels, groups, fraction and seed.
    xb = np.eye(len(examples), 4, dtype=np.float32) + 0.01
    head = train_head(
        xb, [e.label for e in examples], holdout_fraction=0.25, seed=3,
        groups=[e.group for e in examples],
    )  # fmt: skip
    assert head.metrics["holdout_examples"] == len(holdout)


# ---- refusals: exit 2 with a message saying what to do, before any model is loaded -------------
def _refusal_cases(data: Path, tmp: Path) -> dict[str, tuple[list, str]]:
    (tmp / "empty").mkdir()
    (tmp / "one" / "pattern").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (tmp / "one" / "pattern" / name).write_bytes(
            (data / "pattern" / "pattern0.mp4").read_bytes()
        )
    (tmp / "cols.csv").write_text("file,label\nx.mp4,a\n")
    (tmp / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x9c" * 50)
    return {
        "no videos": ([tmp / "empty"], "no videos found"),
        "one label": ([tmp / "one"], "only one label"),
        "missing csv": (["--csv", tmp / "nope.csv"], "cannot read"),
        "unreadable csv": (["--csv", tmp / "binary.csv"], "cannot read"),
        "missing column": (["--csv", tmp / "cols.csv"], "missing column(s) path"),
        "both sources": ([data, "--csv", data / "labels.csv"], "not both"),
        "neither source": ([], "give DIR"),
        "unknown label": ([data, "--labels", "pattern,cartoon"], "with no videos: cartoon"),
        "single picked label": ([data, "--labels", "pattern"], "only one label"),
        "finetune, nowhere to save": ([data, "--finetune"], "--out-checkpoint"),
        "epochs without finetune": ([data, "--epochs", "2"], "--epochs only apply"),
    }


def test_refusals_exit_2_with_a_message(data, tmp_path, capsys):
    for case, (args, message) in _refusal_cases(data, tmp_path).items():
        rc, out, err = sora(capsys, *args, "--variant", VARIANT)
        assert rc == 2, (case, out, err)
        assert message in err, (case, err)
        assert "Traceback" not in err


# ---- frozen vectors -----------------------------------------------------------------------------
def test_frozen_head_separates_the_labels_and_csv_gives_the_same_head(data, tmp_path, capsys):
    rc, out, err = sora(capsys, data, "--variant", VARIANT, "--out", tmp_path / "dir.head")
    assert rc == 0, err
    assert "12 videos, 2 labels: fractal 6, pattern 6" in out
    assert "accuracy 1.000, macro-F1 1.000" in out
    head = read_head_file(tmp_path / "dir.head")
    m = head.metrics
    assert head.labels == ["fractal", "pattern"]
    assert m["holdout_accuracy"] == 1.0 and m["holdout_examples"] >= 2
    assert m["model_version"].startswith(VARIANT + "-") and m["mode"] == "frozen"
    assert m["examples_per_label"] == {"fractal": PER_LABEL, "pattern": PER_LABEL}

    # New renders of each label's sources (other lengths, so other frames), never trained
    # on, are told apart too. (At another frame size the untrained encoder fails this.)
    from sora_encoder import load_embedder

    embedder = load_embedder(variant=VARIANT, precision="fp32")
    assert embedder.model_version == m["model_version"]
    fresh = {
        "fractal": make_video(tmp_path / "f.mp4", duration_s=5.3, size=(64, 48), fps=10,
                              source="life"),
        "pattern": make_video(tmp_path / "p.mp4", duration_s=4.6, size=(64, 48), fps=10),
    }  # fmt: skip
    xq = np.stack([embedder.embed(p).vector for p in fresh.values()])
    assert head.predict(xq) == list(fresh)

    rc, _, err = sora(capsys, "--csv", data / "labels.csv", "--variant", VARIANT,
                      "--out", tmp_path / "csv.head")  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "csv.head").read_bytes() == (tmp_path / "dir.head").read_bytes()


def test_store_makes_the_classifier_visible_to_the_api(data, empty_db_url, monkeypatch, capsys):
    from services.api.classifier_service import ClassifierService
    from services.errors import ConflictError
    from services.store import get_classifier, open_store

    monkeypatch.setenv("SORA_DATABASE_URL", empty_db_url)
    rc, out, err = sora(capsys, "--csv", data / "grouped.csv", "--variant", VARIANT,
                        "--store", "synthetic")  # fmt: skip
    assert rc == 0, err
    assert "12 videos, 2 labels, 6 groups" in out
    assert "stored classifier 'synthetic'" in out and "no video in the store has vectors" in out

    store = open_store(empty_db_url)
    try:
        with store.ReadSession.begin() as s:
            row = get_classifier(s, "synthetic")
            version, labels = row.model_version, list(row.labels)
            head = TrainedHead.from_bytes(row.weights)
            metrics = dict(row.metrics)
        assert version.startswith(VARIANT + "-") and labels == ["fractal", "pattern"]
        assert metrics["model_version"] == version and metrics["holdout_accuracy"] == 1.0
        # The API's classify call: it answers while the server serves the head's version...
        x = head.W[:, 0] - head.W[:, 1]  # a vector the head calls "fractal"
        assert head.predict((x / np.linalg.norm(x))[None]) == ["fractal"]
        service = ClassifierService(store, SimpleNamespace(model_version=version))
        scores, used = service.classify_vector("synthetic", x)
        assert used == version and scores[0][0] == "fractal"
        # ...and refuses it under another model version.
        other = ClassifierService(store, SimpleNamespace(model_version=VARIANT + "-0"))
        with pytest.raises(ConflictError, match="retrain"):
            other.classify_vector("synthetic", x)
    finally:
        store.dispose()


# ---- fine-tuning --------------------------------------------------------------------------------
def test_finetune_writes_a_new_encoder_and_a_head_keyed_by_it(data, tmp_path, capsys, monkeypatch):
    from services.store import get_classifier, open_store
    from sora_encoder import create_model
    from sora_encoder.checkpoint import WEIGHTS_NAME, load_checkpoint, model_version

    url = f"sqlite:///{tmp_path / 'sora.db'}"
    monkeypatch.setenv("SORA_DATABASE_URL", url)
    ckpt = tmp_path / "ft"
    rc, out, err = sora(
        capsys, data, "--variant", VARIANT, "--finetune", "--epochs", "2", "--batch-size", "4",
        "--out-checkpoint", ckpt, "--out", tmp_path / "ft.head", "--store", "tuned",
    )  # fmt: skip
    assert rc == 0, err
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["0", "1", "2"]
    assert all("holdout accuracy" in line for line in epoch_lines)
    assert f"SORA_CHECKPOINT={ckpt.resolve()}" in out

    start = create_model(VARIANT)
    model, config, version = load_checkpoint(ckpt)
    assert config.name == VARIANT and version != model_version(start, config)
    tuned, initial = load_file(str(ckpt / WEIGHTS_NAME)), start.state_dict()
    changed = [k for k, v in tuned.items() if not np.array_equal(v, initial[k].numpy())]
    assert len(changed) > len(tuned) // 2  # the encoder itself was trained, not just a head

    log = json.loads((ckpt / "finetune.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [0, 1, 2] and log["model_version"] == version
    assert all(0.0 <= e["holdout_accuracy"] <= 1.0 for e in log["epochs"])
    assert log["best_epoch"] in (1, 2)

    head = read_head_file(tmp_path / "ft.head")
    assert head.metrics["model_version"] == version and head.metrics["mode"] == "finetune"
    assert head.metrics["start_model_version"] == model_version(start, config)
    assert (ckpt / "classifier-head.safetensors").read_bytes() == head.to_bytes()
    store = open_store(url)
    try:
        with store.ReadSession.begin() as s:
            assert get_classifier(s, "tuned").model_version == version
    finally:
        store.dispose()
