"""Server settings: `OMNICC_*` environment variables over a YAML file over defaults.

`load_settings()` is the one way in; it turns every problem into a `SettingsError` whose message
is one line naming the setting, so the CLI can print it as it is.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "OMNICC_"
SECRET_KEY_FILE = "secret_key"
DATABASE_FILE = "omnicc.db"
SECRET_KEY_MODE = 0o600

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "text"]


class SettingsError(Exception):
    """The settings are invalid; the message is one line that names the setting."""


class Settings(BaseSettings):
    """Everything a server process needs to know before it starts."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    config: Path | None = Field(
        default=None, description="YAML file the other settings are read from (OMNICC_CONFIG)."
    )
    data_dir: Path = Field(
        default=Path("./data"), description="Holds the SQLite file, the secret key, uploads."
    )
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty: an SQLite file in data_dir."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port.")
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs sessions and tokens; empty: generated once and kept in data_dir.",
    )
    log_level: LogLevel = "info"
    log_format: LogFormat = "json"
    max_request_bytes: int = Field(default=1_048_576, gt=0, description="Any request body.")
    max_upload_bytes: int = Field(default=10_485_760, gt=0, description="multipart/form-data.")
    max_message_bytes: int = Field(default=16_384, gt=0, description="One chat message's text.")
    shutdown_grace_s: int = Field(
        default=10, ge=0, description="How long open connections may finish after SIGTERM."
    )
    public_base_url: str = Field(
        default="", description="URL customers and agents reach; empty: http://host:port."
    )
    sip_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="SIP port (UDP and TCP) for phones and trunks; empty: no voice; 0 picks one.",
    )
    sip_host: str = Field(default="127.0.0.1", description="Address SIP and media listen on.")
    rtpengine: str = Field(
        default="",
        description="host:port of an external rtpengine's ng control, or several "
        "comma-separated (a pool: each call on the healthy one with the fewest calls); "
        "empty: OmniCC starts one.",
    )
    media_ports: str = Field(
        default="30000-30999", pattern=r"^\d{2,5}-\d{2,5}$",
        description="UDP port range of the embedded rtpengine's media.",
    )
    sip_trunk: str = Field(
        default="",
        description="Carrier trunk for outbound calls, sip:user@host:port;transport=udp; "
        "empty: no outbound calls.",
    )
    sip_trunk_password: SecretStr = Field(
        default=SecretStr(""), description="The trunk's digest password."
    )
    sip_trunk_register: bool = Field(
        default=False, description="REGISTER to the trunk (carriers that need a registration)."
    )
    phone_region: str = Field(
        default="", description="Region (ISO 3166, e.g. FI) of numbers dialled without +."
    )
    recording_retention_days: int = Field(
        default=90, ge=0, description="Days call recordings are kept; 0 keeps them forever; "
        "a tenant's own retention (admin API) overrides it."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments (command-line options) win, then the environment, then the file.
        return init_settings, env_settings, ConfigFileSource(settings_cls)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("data_dir")
    @classmethod
    def _prepare_data_dir(cls, path: Path) -> Path:
        resolved = path.expanduser().resolve()
        try:
            resolved.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create {resolved}: {error.strerror or error}") from error
        return resolved

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        # Assignment on purpose: the derived values keep their non-optional types.
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / DATABASE_FILE}"
        if not self.secret_key.get_secret_value():
            try:
                key = read_or_create_secret_key(self.data_dir / SECRET_KEY_FILE)
            except SettingsError as error:
                raise ValueError(f"setting secret_key ({ENV_PREFIX}SECRET_KEY): {error}") from error
            self.secret_key = SecretStr(key)
        if not self.public_base_url:
            self.public_base_url = f"http://{_url_host(self.host)}:{self.port}"
        return self

    @property
    def is_embedded_database(self) -> bool:
        """True for the SQLite default, which the server migrates itself at start-up."""
        return self.database_url.startswith("sqlite")


class ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML file named by `config` (a keyword argument or OMNICC_CONFIG), if any."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if path in (None, ""):
            return {}
        return read_config_file(Path(path), set(self.settings_cls.model_fields) - {"config"})


def read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """The settings in a YAML file: one mapping of setting names to values."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"config file {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"config file {path}: not valid YAML{where}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping of settings")
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting {', '.join(unknown)}")
    return data


def read_or_create_secret_key(path: Path) -> str:
    """The key kept at `path`; created (owner-only) on first use so sessions survive restarts."""
    key = secrets.token_urlsafe(48)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_KEY_MODE)
    except FileExistsError:
        return _read_secret_key(path)
    except OSError as error:
        raise SettingsError(f"cannot create {path}: {error.strerror or error}") from error
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key


def _read_secret_key(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read {path}: {error}") from error
    if mode & 0o077:
        # Like ssh with a private key: refuse rather than use a secret others may have read.
        raise SettingsError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    if not key:
        raise SettingsError(f"{path} is empty; delete it to generate a new key")
    return key


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def load_settings(**overrides: Any) -> Settings:
    """Settings from keyword arguments (None means unset), the environment, the file, defaults."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from error


def describe_validation_error(error: ValidationError) -> str:
    """The first problem, on one line: `setting port (OMNICC_PORT): ...`."""
    first = error.errors(include_url=False)[0]
    name = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if not name:
        return message  # a cross-field check, which names its setting itself
    env_name = ENV_PREFIX + name.split(".")[0].upper()
    shown = first.get("input")
    is_shown = isinstance(shown, str | int | float) and name != "secret_key"
    got = f", got {shown!r}" if is_shown and first["type"] != "value_error" else ""
    return f"setting {name} ({env_name}): {message}{got}"
