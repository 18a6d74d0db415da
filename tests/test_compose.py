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
    assert {"redis", "postgres", "api", "worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])  # the AOF persists
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_commands_are_the_ones_the_tests_run():
    services = compose()["services"]
    assert services["worker"]["command"] == ["sora", "worker"]
    assert services["api"]["command"][:2] == ["sora", "serve"]
    for name in ("worker", "api"):
        # Each command exists and parses its options, as the tests start it.
        args = services[name]["command"][1:]
        res = subprocess.run(
            [sys.executable, "-m", "sora_cli.main", *args[:1], "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        from sora_cli.main import build_parser

        parsed = build_parser().parse_args(args)
        assert parsed.command == args[0]
    # The API shares the workers' data volume (uploads) and their video folder.
    assert set(services["api"]["volumes"]) == set(services["worker"]["volumes"])


def test_worker_environment_names_settings_that_exist(monkeypatch):
    env = dict(compose()["services"]["worker"]["environment"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings.from_env()
    assert s.database_url.startswith("postgresql")
    assert s.broker_url.startswith("redis://")
    assert str(s.home) == "/data"
