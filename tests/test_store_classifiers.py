"""Classifiers: saved by unique name, replaced on retraining."""

from __future__ import annotations

import pytest

from services.errors import InvalidArgumentError, NotFoundError
from services.store import (
    delete_classifier,
    get_classifier,
    list_classifiers,
    save_classifier,
)


def test_save_get_replace_list_delete(db):
    with db.Session.begin() as s:
        first = save_classifier(
            s,
            name="scene",
            labels=["indoor", "outdoor"],
            weights=b"\x00\x01",
            model_version="m1",
            metrics={"accuracy": 0.8},
        )
        save_classifier(
            s, name="action", labels=["run", "walk"], weights=b"\x02", model_version="m1"
        )
    with db.Session.begin() as s:
        again = save_classifier(
            s,
            name="scene",
            labels=["indoor", "outdoor", "underwater"],
            weights=b"\x03",
            model_version="m2",
            metrics={"accuracy": 0.9},
        )
    assert again.id == first.id  # replaced, not duplicated
    with db.ReadSession() as s:
        got = get_classifier(s, "scene")
        assert (got.labels, got.weights, got.metrics, got.model_version) == (
            ["indoor", "outdoor", "underwater"],
            b"\x03",
            {"accuracy": 0.9},
            "m2",
        )
        assert [c.name for c in list_classifiers(s)] == ["action", "scene"]
    with db.Session.begin() as s:
        delete_classifier(s, "action")
        with pytest.raises(NotFoundError):
            get_classifier(s, "action")
        with pytest.raises(InvalidArgumentError):
            save_classifier(s, name="x", labels=["a", "a"], weights=b"1", model_version="m1")
