"""The documented kcat example (docs/examples/produce-with-kcat.sh) produces an event that
ingest accepts: signed with cast, sent with kcat, to a real Kafka broker."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from eth_account import Account

from masa.app.synthetic import Scenario
from tests.support.fixtures import require

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "produce-with-kcat.sh"
CAST = ROOT / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"


@pytest.mark.parametrize("harness", [("kafka", "sqlite")], indirect=True, ids=["kafka-sqlite"])
def test_the_kcat_example_produces_an_event_ingest_stores(harness):
    for tool, path in (
        ("kcat", shutil.which("kcat")),
        ("cast", CAST if CAST.exists() else None),
        ("jq", shutil.which("jq")),
    ):
        if path is None:
            require(f"{tool} is not installed (scripts/provision installs it)")
    key = "0x" + "42" * 32
    worker = Account.from_key(key)
    scenario = Scenario(harness.people, start=datetime.now(UTC) - timedelta(minutes=1))
    harness.send([scenario.stake(worker, 1)])
    env = {
        **os.environ,
        "BROKER": harness.settings.bus.bootstrap_servers,
        "TOPIC": harness.settings.bus.events_topic,
        "PRIVATE_KEY": key,
        "CAST": str(CAST),
    }
    result = subprocess.run([str(SCRIPT), "7"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    sent = orjson.loads(result.stdout.strip().splitlines()[-1])

    stats = harness.ingest()
    assert stats["stored"] == 2, stats
    stored = {str(r.event_id): r.envelope for r in harness.stored()}
    assert stored[sent["id"]]["producer"] == worker.address.lower()
    assert stored[sent["id"]]["payload"] == {"seq": 7, "capabilities": ["data"]}
    assert harness.dead_letters() == []
