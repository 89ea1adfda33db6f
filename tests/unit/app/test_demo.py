"""`omnicc demo`'s options, the demo's logins file and the traffic's questions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from omnicc.app.demo import LOGINS_FILE, demo_passwords, new_password
from omnicc.app.traffic import TOPIC_QUEUES, load_questions
from omnicc.cli import app

runner = CliRunner()


def test_demo_help_documents_the_options() -> None:
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--data-dir", "--host", "--port", "--traffic", "--bot-agents"):
        assert option in result.stdout
    assert "logins" in result.stdout


@pytest.mark.parametrize(("args", "rate"), [
    ([], None),
    (["--traffic"], 30.0),
    (["--traffic", "--port", "9000"], 30.0),
    (["--port", "9000", "--traffic"], 30.0),
    (["--traffic", "60"], 60.0),
    (["--traffic=12.5"], 12.5),
])
def test_traffic_takes_a_rate_or_stands_alone(args: list[str], rate: float | None) -> None:
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    demo = command.commands["demo"]
    context = demo.make_context("demo", list(args))
    assert context.params["traffic"] == rate


def test_demo_refuses_a_bad_rate_before_starting(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--traffic", "0"])
    assert result.exit_code == 2
    assert "--traffic must be > 0" in result.output
    assert not (tmp_path / LOGINS_FILE).exists()


def test_the_simulator_demo_is_demo_sim() -> None:
    result = runner.invoke(app, ["demo-sim", "--help"])
    assert result.exit_code == 0 and "--hours" in result.stdout


def test_passwords_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = demo_passwords(tmp_path, ["aino", "sofia"])
    assert first["aino"] != first["sofia"]
    path = tmp_path / LOGINS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = demo_passwords(tmp_path, ["aino", "sofia", "bot1"])
    assert again["aino"] == first["aino"] and again["sofia"] == first["sofia"]
    assert json.loads(path.read_text())["bot1"] == again["bot1"]
    path.chmod(0o644)
    demo_passwords(tmp_path, ["aino"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_new_password_is_long_and_unambiguous() -> None:
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 19 and password.count("-") == 3
        assert not set(password) & set("01ilo")


def test_every_queue_has_questions_of_each_of_its_topics() -> None:
    questions = load_questions()
    for queue, categories in TOPIC_QUEUES.items():
        assert {q.category for q in questions[queue]} == set(categories)
        assert all(q.text.strip() for q in questions[queue])
