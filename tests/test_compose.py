"""docker-compose.yml cannot be run here (no Docker engine): check that it is valid and
that it runs the same commands and settings the tests exercise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_and_durability():
    services = compose()["services"]
    assert {"redis", "postgres", "worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])  # the AOF persists
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_worker_command_is_the_one_the_tests_run():
    worker = compose()["services"]["worker"]
    assert worker["command"] == ["sora", "worker"]
    # The command exists and parses, as the tests start it (`python -m services.cli.main`).
    res = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "worker", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_worker_environment_names_settings_that_exist(monkeypatch):
    env = compose()["services"]["worker"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings.from_env()
    assert s.database_url.startswith("postgresql")
    assert s.broker_url.startswith("redis://")
    assert str(s.home) == "/data"
