"""Smoke test of the chat load benchmark: tiny sizes, SQLite, a real server and relay.

No timing is asserted: the point is that the benchmark sets up every session through the real
protocol, runs both phases against OmniCC and the relay, counts every message on both sides,
and ends with one JSON line carrying each figure.
"""

from __future__ import annotations

import json

import pytest
from bench.chat_load import main

PHASE_FIGURES = {
    "messages_per_s", "sent", "delivered", "lost", "duplicated", "unacked", "p50_ms", "p95_ms",
    "p99_ms", "reply_p99_ms", "server_cpu", "generator_cpu",
}


def test_quick_run_loses_and_duplicates_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick", "--backend", "sqlite"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = report["results"]
    assert set(results) == {"relay", "sqlite"}
    for name, result in results.items():
        assert result["sessions"] == report["load"]["customers"], name
        assert result["agents"] == report["load"]["agents"], name
        for phase in ("paced", "saturate"):
            figures = result[phase]
            assert figures.keys() >= PHASE_FIGURES, (name, phase)
            assert figures["sent"] > 0, (name, phase)
            assert figures["lost"] == 0, (name, phase, figures["errors"])
            assert figures["duplicated"] == 0, (name, phase)
            assert figures["unacked"] == 0, (name, phase)
            assert figures["delivered"] == figures["sent"], (name, phase)
            assert figures["error_count"] == 0, (name, phase, figures["errors"])
    sqlite = results["sqlite"]
    assert sqlite["ratio_to_relay"] > 0
    assert sqlite["bytes_per_session"] != 0
    assert sqlite["goals"]["none_lost_or_duplicated"] is True
