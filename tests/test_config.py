"""Configuration: defaults that work with no file, the example file, environment overrides, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_no_file_means_working_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.model.name == "" and settings.model.quantization == "auto"
    assert settings.storage.database_url() == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'copydesk.sqlite3'}"


def test_the_example_file_documents_exactly_the_defaults() -> None:
    assert load_settings(REPO / "config.example.toml", environ={}) == Settings()


def keys_named(example: str) -> set[str]:
    """section.key for every key the example sets, or shows commented out as `# key = …`."""
    named, section = set(), ""
    for line in example.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]\s*", line):
            section = header[1]
        elif key := re.match(r"(?:#\s*)?(\w+)\s*=", line):
            named.add(f"{section}.{key[1]}")
    return named


def test_the_example_file_names_every_key_of_the_settings() -> None:
    keys = {f"{section}.{key}" for section, values in Settings().model_dump().items() for key in values}
    named = keys_named((REPO / "config.example.toml").read_text())
    assert keys - named == set(), "keys of bot/config.py that config.example.toml does not name"
    assert named - keys == set(), "keys config.example.toml names that bot/config.py does not have"


def test_the_example_check_sees_a_missing_key() -> None:
    assert keys_named('[engine]\nseed = 0\n# timeout_s = 300.0\n[limits]\nwaiting = 1\n') == {
        "engine.seed", "engine.timeout_s", "limits.waiting"}


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = tmp_path / "copydesk.toml"
    path.write_text('[engine]\nmax_new_tokens = 100\n[model]\nquantization = "int8"\n')
    settings = load_settings(path, environ={"COPYDESK_ENGINE__MAX_NEW_TOKENS": "32", "COPYDESK_UNRELATED": "x"})
    assert settings.engine.max_new_tokens == 32
    assert settings.model.quantization == "int8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\ndevice = "tpu"\n', "model.device: String should match pattern"),
        ("[engine]\nmax_concurrent = 0\n", "engine.max_concurrent: Input should be greater than or equal to 1 (got 0)"),
        ('[export]\nrating_threshold = "high"\n', "export.rating_threshold: Input should be a valid number"),
        ("[moderators]\nroles = []\n", "moderators: unknown key"),
        ("model = 3\n", "model: Input should be a valid dictionary"),
        ('[engine]\nkind = "openai"\n', 'engine.kind = "openai" needs engine.base_url'),
        ('[metrics]\nhost = "0.0.0.0"\n', "metrics.host: metrics are served on a loopback address only"),
        ("[discord]\nshards = 0\n", 'discord: discord.shards is "off", "auto" or a number of shards of at least 1'),
        ("[discord]\nshards = 2\nshard_ids = [2]\n", "discord: discord.shard_ids needs discord.shards set to a number"),
    ],
)
def test_each_bad_key_is_named_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")


def test_an_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path, environ={})
