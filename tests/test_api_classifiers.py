"""Classifiers through the API: train from labelled video ids, list, classify a video or a
vector; the status codes of each way it can go wrong."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.api.classifier_service import ClassifierService
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.errors import ConflictError, InvalidArgumentError, NotFoundError
from services.store import (
    JobKind,
    VideoStatus,
    claim_job,
    complete_ingest,
    enqueue_job,
    list_videos,
    register_video,
)
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, Api, add_video, make_api, unit


def _two_classes(api: Api, n: int = 6, seed: int = 0) -> dict[int, str]:
    """n videos near e0 ("cat") and n near e1 ("dog") -> {video id: label}."""
    rng = np.random.default_rng(seed)
    examples = {}
    for label, axis in (("cat", 0), ("dog", 1)):
        for _ in range(n):
            centre = np.eye(DIM)[axis] * 3
            vid = add_video(api.store, centre + rng.normal(size=(2, DIM)))
            examples[vid] = label
    api.sync()
    return examples


def test_train_list_and_classify(api: Api):
    examples = _two_classes(api)
    c = api.client.train_classifier("pets", examples, seed=1)
    assert (c.name, list(c.labels), c.model_version) == ("pets", ["cat", "dog"], "test-v1")
    assert c.train_examples + c.holdout_examples == len(examples)
    assert c.holdout_examples > 0 and c.holdout_accuracy >= 0.75
    assert 0.0 <= c.holdout_macro_f1 <= 1.0 and c.created_at.endswith("Z")
    assert [x.name for x in api.client.list_classifiers()] == ["pets"]

    cat_video = next(v for v, label in examples.items() if label == "cat")
    labels = api.client.classify("pets", video_id=cat_video)
    assert [name for name, _ in labels] == ["cat", "dog"]  # most probable first
    assert labels[0][1] > 0.5 and abs(sum(p for _, p in labels) - 1.0) < 1e-5
    r = api.client.classify_raw("pets", vector=unit(np.eye(DIM)[1]))
    assert r.labels[0].label == "dog" and r.model_version == "test-v1"

    # Retraining under the same name replaces it.
    again = api.client.train_classifier("pets", examples, holdout_fraction=0.5)
    assert again.id == c.id and again.holdout_examples >= c.holdout_examples
    assert len(api.client.list_classifiers()) == 1


def test_training_errors_say_what_to_fix(api: Api):
    examples = _two_classes(api, n=3)
    vid = next(iter(examples))
    c = api.client
    cases = [
        (lambda: c.train_classifier("x", dict.fromkeys(examples, "same")), "INVALID_ARGUMENT",
         "at least 2 labels"),
        (lambda: c.train_classifier("x", []), "INVALID_ARGUMENT", "at least 2 labels"),
        (lambda: c.train_classifier("x", [(vid, "a"), (vid, "b")]), "INVALID_ARGUMENT",
         "labelled both"),
        (lambda: c.train_classifier("", examples), "INVALID_ARGUMENT", "needs a name"),
        (lambda: c.train_classifier("x", {**examples, 999: "cat"}), "NOT_FOUND", "999"),
        (lambda: c.train_classifier("x", examples, holdout_fraction=1.5), "INVALID_ARGUMENT",
         "holdout_fraction"),
        # one example of a label: the head cannot hold any out
        (lambda: c.train_classifier("x", {**dict.fromkeys(examples, "a"), vid: "b"}),
         "INVALID_ARGUMENT", "at least 2 examples"),
    ]  # fmt: skip
    for call, code, needle in cases:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code().name == code, needle
        assert needle in e.value.details()

    with api.store.Session.begin() as s:
        pending, _, _ = register_video(s, uri="/p.mp4", content_sha256="c" * 64, size_bytes=1)
        pending_id = pending.id
    with pytest.raises(grpc.RpcError) as e:
        c.train_classifier("x", {**examples, pending_id: "cat"})
    assert e.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"video(s) {pending_id} have no vector" in e.value.details()
    assert "PENDING" in e.value.details()
    assert c.list_classifiers() == []

    c.train_classifier("pets", examples)
    with pytest.raises(grpc.RpcError) as e:
        c.classify("pets", video_id=pending_id)
    assert e.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        c.classify("pets", vector=np.ones(DIM + 3))
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT and f"{DIM}-d" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        c.stub.Classify(pb.ClassifyRequest(classifier="pets"), metadata=c._auth)
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def _reindex_all(api: Api, version: str) -> None:
    """Write `version` vectors for every READY video, as a reindex would."""
    with api.store.ReadSession.begin() as s:
        videos, _ = list_videos(s, status=VideoStatus.READY, page_size=1000)
        ids = [v.id for v in videos]
    rng = np.random.default_rng(9)
    for vid in ids:
        with api.store.Session.begin() as s:
            job, _ = enqueue_job(s, vid, kind=JobKind.REINDEX, model_version=version)
            claim_job(s, job.id, "w", 60)
            xb = unit(rng.normal(size=(2, DIM)))
            complete_ingest(
                s, job.id, vid, model_version=version,
                segments=[(0, 0.0, 4.0, xb[0]), (1, 4.0, 8.0, xb[1])],
                video_vector=unit(xb.mean(axis=0)),
            )  # fmt: skip


def test_a_classifier_of_another_model_version_is_refused(db, tmp_path):
    a = make_api(db, tmp_path)
    try:
        examples = _two_classes(a, n=3)
        a.client.train_classifier("pets", examples)
        # The configured model changes and every video is re-embedded with it.
        a.server.keeper._configured = "test-v2"
        _reindex_all(a, "test-v2")
        a.sync()
        assert a.server.keeper.model_version == "test-v2"
        vid = next(iter(examples))
        for call in (
            lambda: a.client.classify("pets", video_id=vid),
            lambda: a.client.classify("pets", vector=np.ones(DIM)),
        ):
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "retrain" in e.value.details() and "test-v1" in e.value.details()
        retrained = a.client.train_classifier("pets", examples)
        assert retrained.model_version == "test-v2"
        assert len(a.client.classify("pets", video_id=vid)) == 2
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_classifier_service_without_grpc(api: Api):
    service = ClassifierService(api.store, api.server.keeper)
    examples = _two_classes(api, n=3)
    row = service.train("plain", list(examples.items()))
    labels, version = service.classify_vector("plain", unit(np.eye(DIM)[0] * 3 + 0.1))
    assert labels[0][0] == "cat" and version == row.model_version
    with pytest.raises(NotFoundError):
        service.classify_video("nope", 1)
    with pytest.raises(NotFoundError, match="no such video"):
        service.train("x", [(999, "a"), *examples.items()])
    with pytest.raises(InvalidArgumentError):
        service.classify_vector("plain", np.zeros(DIM))
    with pytest.raises(ConflictError):
        ClassifierService(api.store, _NoVectors()).train("x", list(examples.items()))


class _NoVectors:
    model_version = None
