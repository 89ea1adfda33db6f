"""Settings: keyword > environment > file > default; the secret key kept owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from omnicc.config import SECRET_KEY_FILE, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CONFIG", "DATA_DIR", "DATABASE_URL", "HOST", "PORT", "SECRET_KEY",
                 "LOG_LEVEL", "LOG_FORMAT", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(f"OMNICC_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.data_dir.is_dir()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'omnicc.db'}"
    assert settings.is_embedded_database
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert (settings.log_level, settings.log_format) == ("info", "json")
    assert settings.public_base_url == "http://127.0.0.1:8080"


def test_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "omnicc.yaml",
                          "port: 9000\nhost: 0.0.0.0\nlog_format: text\n")
    monkeypatch.setenv("OMNICC_CONFIG", str(config))
    monkeypatch.setenv("OMNICC_PORT", "9100")
    settings = load_settings()
    assert settings.port == 9100  # environment over file
    assert settings.host == "0.0.0.0"  # file over default
    assert settings.log_format == "text"
    assert settings.log_level == "info"  # default
    assert settings.config == config


def test_command_line_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "omnicc.yaml", "port: 9000\n")
    monkeypatch.setenv("OMNICC_PORT", "9100")
    settings = load_settings(config=config, port=9200, host=None)
    assert settings.port == 9200
    assert settings.host == "127.0.0.1"  # None means "not given"


def test_config_option_names_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnicc.yaml", "log_level: DEBUG\n")
    assert load_settings(config=config).log_level == "debug"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: [1, 2]\n", "setting port (OMNICC_PORT): "),
        ("port: 70000\n", "setting port (OMNICC_PORT): Input should be less than or equal"),
        ("log_format: xml\n", "setting log_format (OMNICC_LOG_FORMAT): Input should be 'json'"),
        ("public_base_url: example.com\n", "setting public_base_url (OMNICC_PUBLIC_BASE_URL): "
                                            "must start with http:// or https://"),
        ("colour: blue\n", "unknown setting colour"),
        ("- port\n", "expected a mapping of settings"),
        ("port: [\n", "not valid YAML at line"),
    ],
)
def test_invalid_file_is_one_line_naming_the_setting(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write_config(tmp_path / "omnicc.yaml", text)
    with pytest.raises(SettingsError) as raised:
        load_settings(config=config)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_invalid_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICC_PORT", "eighty")
    with pytest.raises(SettingsError, match=r"^setting port \(OMNICC_PORT\): .*'eighty'$"):
        load_settings()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nope\.yaml: No such file"):
        load_settings(config=tmp_path / "nope.yaml")


def test_secret_key_is_generated_once_owner_only_and_reused(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path / "d")
    key_file = tmp_path / "d" / SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = first.secret_key.get_secret_value()
    assert len(key) >= 32
    assert load_settings(data_dir=tmp_path / "d").secret_key.get_secret_value() == key
    assert load_settings(data_dir=tmp_path / "other").secret_key.get_secret_value() != key
    assert key not in repr(first)


def test_secret_key_from_environment_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNICC_SECRET_KEY", "s3cret-from-env")
    settings = load_settings(data_dir=tmp_path / "d")
    assert settings.secret_key.get_secret_value() == "s3cret-from-env"
    assert not (tmp_path / "d" / SECRET_KEY_FILE).exists()


def test_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_settings(data_dir=tmp_path / "d")
    (tmp_path / "d" / SECRET_KEY_FILE).chmod(0o644)
    with pytest.raises(SettingsError, match=r"^setting secret_key \(OMNICC_SECRET_KEY\): .*"
                                            r"readable by others"):
        load_settings(data_dir=tmp_path / "d")


def test_explicit_database_url_is_not_embedded(tmp_path: Path) -> None:
    settings = load_settings(database_url="postgresql+asyncpg://omnicc@db/omnicc")
    assert not settings.is_embedded_database


def test_unusable_data_dir_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SettingsError, match=r"^setting data_dir \(OMNICC_DATA_DIR\): cannot "):
        load_settings(data_dir=blocker / "data")
