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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.metrics import is_loopback
from bot.stats import DecisionRule
from generation.compliance import Rule, RulesError, load_rules, rules_from_words, shipped_rules
from generation.language import AUTO, LANGUAGES
from generation.safety import SafetyPolicy
from generation.training import TrainingConfig

ENV_PREFIX = "COPYDESK_"
DEFAULT_CONFIG_FILE = Path("config.toml")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Section):
    name: str = ""
    quantization: Literal["auto", "nf4", "int4", "int8", "none"] = "auto"
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
    shutdown_grace_s: float = Field(default=30.0, ge=0)  # on SIGTERM, how long running drafts may take to finish


class StorageSettings(_Section):
    data_dir: str = "data"
    url: str = ""

    def database_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).expanduser().resolve() / 'copydesk.sqlite3'}"


class ExportSettings(_Section):
    rating_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    min_votes: int = Field(default=1, ge=0)
    test_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    discord_attachment_mb: float = Field(default=25.0, gt=0)


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
    links_allowed_domains: tuple[str, ...] = ()

    def safety_policy(self) -> SafetyPolicy:
        """The automatic output checks, as the generation layer takes them."""
        return SafetyPolicy(blocked_terms=self.blocked_terms, detect_personal_data=self.detect_personal_data,
                            detect_prompt_leak=self.detect_prompt_leak)

    # Compliance (generation/compliance.py): the shipped rules, a file of the server's own, its never-words.
    check_compliance: bool = True
    compliance_rules_file: str = ""
    never_words: tuple[str, ...] = ()

    @field_validator("compliance_rules_file")
    @classmethod
    def _rules_load(cls, path: str) -> str:
        """A rules file that cannot be used is refused at start, naming the rule and the reason."""
        if path:
            try:
                load_rules(Path(path).expanduser())
            except RulesError as error:
                raise ValueError(str(error)) from None
        return path

    def compliance_rules(self) -> tuple[Rule, ...]:
        """Every rule copy is checked against here (drafts only while check_compliance is on)."""
        own = load_rules(Path(self.compliance_rules_file).expanduser()) if self.compliance_rules_file else ()
        return (*shipped_rules(), *own, *rules_from_words(self.never_words))


class DraftingSettings(_Section):
    language: str = AUTO  # a code of generation/language.py, or "auto": the request's
    brand_words: tuple[str, ...] = ()  # the quality signals say which of these a draft has

    @field_validator("language")
    @classmethod
    def _known_language(cls, code: str) -> str:
        if code != AUTO and code not in LANGUAGES:
            raise ValueError(f'unknown language {code!r}; "auto" or one of: {", ".join(LANGUAGES)}')
        return code


class PrivacySettings(_Section):
    training_consent_default: bool = False
    pseudonymize: bool = True


class DiscordSettings(_Section):
    # "off": one gateway connection. "auto": as many shards as Discord recommends (required past
    # 2,500 servers). A number: that many shards; with shard_ids, this process runs only those.
    shards: Literal["off", "auto"] | int = "off"
    shard_ids: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _shards_exist(self) -> DiscordSettings:
        if self.shard_ids and not (isinstance(self.shards, int) and all(0 <= i < self.shards for i in self.shard_ids)):
            raise ValueError("discord.shard_ids needs discord.shards set to a number, and each id below it")
        if isinstance(self.shards, int) and self.shards < 1:
            raise ValueError(f'discord.shards is "off", "auto" or a number of shards of at least 1 (got {self.shards})')
        return self

    def client_options(self) -> dict[str, Any]:
        """What discord.py's AutoShardedClient takes; empty when not sharded."""
        if self.shards == "off":
            return {}
        return {"shard_count": None if self.shards == "auto" else self.shards, "shard_ids": list(self.shard_ids) or None}


class TrainingSettings(_Section):
    """`copydesk train`'s defaults; its options override them."""

    method: Literal["sft", "dpo", "kto", "sft+dpo"] = "sft"
    epochs: float = Field(default=2.0, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    lora_rank: int = Field(default=16, ge=1, le=256)
    # 0: all cores, or half of them (at least one) while a bot process serves the same database.
    threads: int = Field(default=0, ge=0)
    max_steps: int = Field(default=0, ge=0)  # > 0 caps each phase: a quick try (or a test)
    version_check_s: float = Field(default=5.0, gt=0)  # how often the bot looks for a newly served version

    def versions_dir(self, data_dir: str) -> Path:
        return Path(data_dir).expanduser() / "versions"

    def config(self, *, method: str | None = None, epochs: float | None = None, seed: int = 0,
               max_steps: int | None = None, threads: int | None = None) -> TrainingConfig:
        """The run these defaults describe, with what `copydesk train` or `/models train` was given instead."""
        return TrainingConfig(method=method or self.method, epochs=epochs or self.epochs, seed=seed,
                              learning_rate=self.learning_rate, lora_rank=self.lora_rank, lora_alpha=2 * self.lora_rank,
                              max_steps=max_steps or self.max_steps or -1, threads=threads or self.threads)


class StatsSettings(_Section):
    """The decision rule `copydesk stats` prints its verdict by (bot.stats.DecisionRule)."""

    min_votes: int = Field(default=100, ge=1)
    win_probability: float = Field(default=0.9, gt=0.5, lt=1)
    max_expected_loss: float = Field(default=0.01, gt=0, lt=1)
    votes_per_member: int = Field(default=25, ge=1)

    def rule(self) -> DecisionRule:
        return DecisionRule(min_votes=self.min_votes, win_probability=self.win_probability,
                            max_expected_loss=self.max_expected_loss, votes_per_member=self.votes_per_member)


class ExperimentSettings(_Section):
    """How an experiment gives new drafts to its variants (bot/experiments.py)."""

    # "draft": each draft drawn by the shares; "member": each member kept on one variant per experiment.
    assignment: Literal["draft", "member"] = "draft"


class MetricsSettings(_Section):
    port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    host: str = "127.0.0.1"

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if not is_loopback(host):
            raise ValueError(f"metrics are served on a loopback address only, e.g. 127.0.0.1 (got {host!r})")
        return host


class Settings(_Section):
    model: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    storage: StorageSettings = StorageSettings()
    export: ExportSettings = ExportSettings()
    limits: LimitSettings = LimitSettings()
    moderation: ModerationSettings = ModerationSettings()
    drafting: DraftingSettings = DraftingSettings()
    privacy: PrivacySettings = PrivacySettings()
    training: TrainingSettings = TrainingSettings()
    stats: StatsSettings = StatsSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    metrics: MetricsSettings = MetricsSettings()
    discord: DiscordSettings = DiscordSettings()

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
    if path.exists() and not path.is_file():  # a folder, or a device such as /dev/zero that never ends
        raise ConfigError(f"cannot read config file {path}: it is not a regular file")
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
