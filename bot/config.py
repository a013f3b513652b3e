"""Configuration: a TOML file (optional; every key has a working default) plus environment overrides.

Any key can be overridden from the environment as COPYDESK_<SECTION>__<KEY>, e.g.
COPYDESK_ENGINE__MAX_NEW_TOKENS=64. Secrets are read from the environment only and never logged.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "COPYDESK_"
DEFAULT_CONFIG_FILE = Path("config.toml")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Section):
    name: str = ""
    quantization: Literal["nf4", "int8", "none"] = "nf4"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    allow_download: bool = False
    cache_dir: str = ""

    def cache_path(self) -> Path:
        return Path(self.cache_dir or os.environ.get("COPYDESK_CACHE_DIR") or "~/.cache/copydesk").expanduser()


class EngineSettings(_Section):
    kind: Literal["local", "openai"] = "local"
    max_concurrent: int = Field(default=16, ge=1, le=256)
    max_context_tokens: int = Field(default=2048, ge=256)
    max_new_tokens: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0)
    base_url: str = ""
    timeout_s: float = Field(default=300.0, gt=0)



class StorageSettings(_Section):
    data_dir: str = "data"
    url: str = ""

    def database_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).expanduser().resolve() / 'copydesk.sqlite3'}"


class ExportSettings(_Section):
    rating_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)


class LimitSettings(_Section):
    waiting_per_member: int = Field(default=3, ge=0)
    per_member_per_minute: int = Field(default=10, ge=0)
    waiting: int = Field(default=100, ge=0)


class ModerationSettings(_Section):
    roles: tuple[str, ...] = ()
    review_channel_id: int = Field(default=0, ge=0)
    blocked_terms: tuple[str, ...] = ()
    detect_personal_data: bool = True
    detect_prompt_leak: bool = True


class PrivacySettings(_Section):
    training_consent_default: bool = False
    pseudonymize: bool = True


class Settings(_Section):
    model: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    storage: StorageSettings = StorageSettings()
    export: ExportSettings = ExportSettings()
    limits: LimitSettings = LimitSettings()
    moderation: ModerationSettings = ModerationSettings()
    privacy: PrivacySettings = PrivacySettings()

    @model_validator(mode="after")
    def _server_named(self) -> Settings:
        if self.engine.kind == "openai" and not (self.engine.base_url and self.model.name):
            raise ValueError('engine.kind = "openai" needs engine.base_url (e.g. "http://gpu-box:8000/v1") '
                             "and model.name (the model the server serves)")
        return self


def load_settings(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the config file (if any), apply environment overrides, and validate every key."""
    explicit = path is not None or bool(environ.get(ENV_PREFIX + "CONFIG"))
    path = path or Path(environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    if path.exists() or explicit:
        data = _read_toml(path)
    source = str(path) if data else "the configuration"
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and "__" in key:
            section, _, name = key[len(ENV_PREFIX):].lower().partition("__")
            section_data = data.setdefault(section, {})
            if isinstance(section_data, dict):
                section_data[name] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: it is not UTF-8 text (byte {error.start})") from None


def _describe(problem: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if problem["type"] == "value_error":
        return f"{key + ': ' if key else ''}{problem['ctx']['error']}"
    return f"{key}: {problem['msg']} (got {problem['input']!r})"
