"""Compliance rules: the shipped file's own examples, the loader's refusals, a server's rules and never-words,
`copydesk check` as a pipeline runs it, and a held draft's review post through the real bot and model."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import ConfigError, ModerationSettings, load_settings
from bot.discord.drafting import HELD
from bot.service import DraftService, Policy
from generation.compliance import SHIPPED_RULES, RulesError, check, hold_reasons, load_rules, rules_from_words, shipped_rules
from storage import Repository
from support.discord_harness import start_bot, stop_bot
from support.fake_discord import FakeDiscord

SHIPPED = tomllib.loads(SHIPPED_RULES.read_text(encoding="utf-8"))["rule"]
COPYDESK = str(Path(sys.executable).with_name("copydesk"))


def cases(key: str) -> Iterator[Any]:
    for table in SHIPPED:
        for text in table.get(key, []):
            yield pytest.param(table["id"], table["languages"][0], text, id=f"{table['id']}: {text}")


def rule(rule_id: str) -> Any:
    return next(rule for rule in shipped_rules() if rule.id == rule_id)


@pytest.mark.parametrize(("rule_id", "language", "text"), list(cases("examples")))
def test_each_shipped_rule_matches_its_examples(rule_id: str, language: str, text: str) -> None:
    assert rule_id in {match.rule.id for match in check(text, language, shipped_rules())}


@pytest.mark.parametrize(("rule_id", "language", "text"), list(cases("counter_examples")))
def test_no_shipped_rule_matches_its_counter_examples(rule_id: str, language: str, text: str) -> None:
    assert rule_id not in {match.rule.id for match in check(text, language, shipped_rules())}


def test_every_shipped_rule_has_a_source_an_explanation_and_cases_both_ways() -> None:
    assert len(SHIPPED) == len(shipped_rules()) >= 10
    for table in SHIPPED:
        assert table["source"] and len(table["explanation"]) > 40, table["id"]
        assert table.get("examples") and table.get("counter_examples"), table["id"]
    sources = " ".join(table["source"] for table in SHIPPED)
    for cited in ("Art. 9(3)", "Art. 17", "Art. 25", "16 CFR 255", "16 CFR 465", "Substantiation", "Health", "CAP Code 3.7"):
        assert cited in sources


def test_rules_apply_to_their_languages_and_words_match_as_the_script_writes_them() -> None:
    assert check("全国最佳绿茶", "en", shipped_rules()) == [], "a Chinese rule does not check English copy"
    [match] = check("全国最佳绿茶", "zh", shipped_rules())
    assert (match.rule.id, match.text, match.start) == ("cn-ad-law-9-3-absolute", "最佳", 2), "inside a word: no spaces in Chinese"
    assert [m.text for m in check("The BEST lantern; the bestselling one.", "en", [rule("uk-cap-3-7-best")])] == ["BEST"]
    never = rules_from_words(["Acme", "  ", "便宜"])
    assert [r.id for r in never] == ["never-1", "never-3"] and never[0].languages == ()
    assert [m.text for m in check("acme, Acmeville, 很便宜", "fr", never)] == ["acme", "便宜"]


def test_a_held_drafts_reasons_name_each_rule_once_with_its_source_and_first_match() -> None:
    matches = check("The best lantern. The best tent. Clinically proven.", "en", shipped_rules())
    assert hold_reasons(matches) == [
        "rule ftc-substantiation (FTC Policy Statement Regarding Advertising Substantiation (1984)) "
        "matched 'Clinically proven'",
        "rule uk-cap-3-7-best (UK CAP Code 3.7 and 3.33) matched 'best'",
    ]


RULE = '[[rule]]\nid = "acme-free"\nlanguages = ["en"]\nsource = "Acme legal"\nexplanation = "Say free only if it is."\n'


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (RULE + 'words = ["free"]\ncolour = "red"\n', "rule 'acme-free': unknown key 'colour'"),
        (RULE + "patterns = ['free(']\n", "rule 'acme-free': pattern 'free(' is not a valid regular expression"),
        (RULE + 'words = ["free"]\nlanguages = ["xx"]\n', None),  # TOML refuses the key twice: not valid TOML
        (RULE.replace('["en"]', '["xx"]') + 'words = ["free"]\n', "rule 'acme-free': unknown language 'xx'"),
        (RULE, "rule 'acme-free': needs words or patterns to match"),
        (RULE + 'words = ["free"]\nexamples = ["Freedom!"]\n', "rule 'acme-free': example 'Freedom!' does not match"),
        (RULE + 'words = ["free"]\ncounter_examples = ["Free shipping"]\n',
         "rule 'acme-free': counter-example 'Free shipping' matches the rule ('Free')"),
        (RULE + 'words = ["free"]\n' + RULE + 'words = ["gratis"]\n', "rule 'acme-free': the id is used twice"),
        (RULE.replace('source = "Acme legal"\n', "") + 'words = ["free"]\n', "rule 'acme-free': source is required"),
        ('[[rule]]\nid = "Bad Id"\nsource = "s"\nexplanation = "e"\nwords = ["x"]\n', "rule 'Bad Id': the id must be"),
        ('[rules]\nid = "x"\n', "unknown key 'rules'"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_file_the_rule_and_the_reason(
    tmp_path: Path, body: str, reason: str | None
) -> None:
    path = tmp_path / "ours.toml"
    path.write_text(body)
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert str(refused.value).startswith(str(path))
    assert (reason or "is not valid TOML") in str(refused.value)


def test_a_servers_rules_file_and_never_words_come_from_the_settings(tmp_path: Path) -> None:
    ours = tmp_path / "ours.toml"
    ours.write_text(RULE + 'words = ["free"]\nexamples = ["Free shipping"]\n')
    config = tmp_path / "config.toml"
    config.write_text(f'[moderation]\ncompliance_rules_file = "{ours}"\nnever_words = ["cheap"]\n')
    rules = load_settings(config, environ={}).moderation.compliance_rules()
    assert [r.id for r in rules[-2:]] == ["acme-free", "never-1"] and len(rules) == len(shipped_rules()) + 2
    assert Policy(moderation=ModerationSettings(check_compliance=False)).compliance == ()

    ours.write_text(RULE + 'words = ["free"]\nexamples = ["Freedom!"]\n')
    with pytest.raises(ConfigError, match="moderation.compliance_rules_file: .*ours.toml: rule 'acme-free': example"):
        load_settings(config, environ={})


def run_check(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, ["check", *args], input=stdin, env={"COPYDESK_CONFIG": ""})


def test_check_prints_where_each_rule_matches_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.toml: copydesk's own rules
    copy = tmp_path / "ad.txt"
    copy.write_text("Fresh tea.\n全国最佳的绿茶，销量第一\n", encoding="utf-8")
    result = run_check(str(copy))
    assert result.exit_code == 1, result.output
    law = "China Advertising Law (2021) Art. 9(3)"
    assert result.output.splitlines() == [
        f"{copy}:2:3: cn-ad-law-9-3-absolute ({law}): '最佳' — {rule('cn-ad-law-9-3-absolute').explanation}",
        f"{copy}:2:11: cn-ad-law-9-3-first ({law}): '第一' — {rule('cn-ad-law-9-3-first').explanation}",
    ]
    english = run_check("--text", "A fine lantern.", "--text", "Our #1 lantern")
    assert english.exit_code == 1 and english.output.startswith("--text 2:1:5: uk-cap-3-7-best (UK CAP Code 3.7 and 3.33): '#1'")
    assert run_check("--language", "zh", "--text", "The best lantern").exit_code == 0, "English rules do not check Chinese"


def test_check_exits_0_on_clean_copy_and_2_when_it_cannot_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    clean = run_check("--text", "A warm lantern for cold nights.")
    assert (clean.exit_code, clean.output) == (0, "")
    ours = tmp_path / "ours.toml"
    ours.write_text(RULE + "patterns = ['(']\n")
    for args, message in (
        ((), "give the copy to check as --text … or as FILE…"),
        (("--text", "x", str(ours)), "give the copy to check as --text … or as FILE…"),
        (("--rules", str(ours), "--text", "x"), "rule 'acme-free': pattern '(' is not a valid regular expression"),
        ((str(tmp_path / "missing.txt"),), "cannot read"),
        (("--language", "xx", "--text", "x"), "Invalid value for '--language'"),
    ):
        result = run_check(*args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    assert "not UTF-8 text" in run_check(str(tmp_path / "latin1.txt")).output
    ours.write_text(RULE + 'words = ["lantern"]\n')
    assert run_check("--rules", str(ours), "--text", "A warm lantern").exit_code == 1, "--rules adds to the shipped ones"


def test_check_in_a_pipeline_reads_standard_input(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("COPYDESK_")}
    piped = subprocess.run([COPYDESK, "check", "-"], input="Clinically proven to keep you dry.\n", capture_output=True,
                           text=True, cwd=tmp_path, env=environ, timeout=120)
    assert piped.returncode == 1, piped.stderr
    assert piped.stdout.startswith("-:1:1: ftc-substantiation (FTC Policy Statement Regarding Advertising Substantiation")


# Words the tiny model cannot avoid, as the server's never-words: every draft is held by a rule.
EVERYDAY_WORDS = ("the", "a", "an", "and", "to", "of", "for", "your", "is", "with", "in", "you", "our")


async def test_a_held_drafts_review_post_names_the_rule_its_source_and_the_match(
    fake: FakeDiscord, repository: Repository, engine: Any, policy: Policy
) -> None:
    rules_only = ModerationSettings(never_words=EVERYDAY_WORDS, detect_personal_data=False, detect_prompt_leak=False)
    strict = DraftService(repository, engine, Policy(engine=policy.engine, member_key=policy.member_key, moderation=rules_only))
    bot, task = await start_bot(fake, strict, ModerationSettings(review_channel_id=fake.guild.channel("moderation").id))
    try:
        interaction = await fake.invoke_command("draft", {"product": "a solar lantern", "audience": "campers"},
                                                subcommand="ad")
        await interaction.wait_for_response()
        await interaction.wait_for_original(lambda m: HELD in m["content"] and not m["components"], timeout=90)
        [post] = await fake.wait_for(lambda: [m for m in fake.channel_messages(fake.guild.channel("moderation"))
                                              if m.get("components")] or None, timeout=60)
    finally:
        await stop_bot(bot, task)
    [draft] = await repository.recent_drafts()
    stored = await repository.get_draft(draft.id)
    matched = next(m for m in check(stored.output, "en", rules_from_words(EVERYDAY_WORDS)))
    assert f"rule {matched.rule.id} (this server's never-words) matched {matched.text!r}" in post["content"]
    assert stored.flags[0].source == "auto" and matched.rule.id in stored.flags[0].reason
    assert stored.language == "en" and stored.quality is not None and stored.quality["unit"] == "words"
