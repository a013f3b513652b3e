"""Compliance rules: claims that get ads rejected or companies fined, as data with their sources.

The rules ship in `generation/rules/compliance.toml`; a server adds its own file and its never-words.
Each rule names the language(s) it applies to (none: every language), the words or regular
expressions it matches, its source, an explanation for the marketer, and examples that must match
and counter-examples that must not (a file whose rule misses its own example is refused, so a rules
file tests itself as it loads). Words match whole words in spaced scripts, any case; in Chinese or
Japanese, which have no spaces, anywhere. A few hundred patterns need no multi-pattern matcher:
each rule is one compiled alternation.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from generation.language import LANGUAGES, phrase_pattern

SHIPPED_RULES = Path(__file__).with_name("rules") / "compliance.toml"
RULE_KEYS = {"id", "languages", "words", "patterns", "source", "explanation", "examples", "counter_examples"}
RULE_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
NEVER_WORDS_SOURCE = "this server's never-words"


class RulesError(ValueError):
    """A rules file cannot be used; the message names the file, the rule and the reason."""


@dataclass(frozen=True)
class Rule:
    id: str
    languages: tuple[str, ...]  # empty: every language
    source: str
    explanation: str
    matcher: re.Pattern[str]
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()

    def applies_to(self, language: str) -> bool:
        return not self.languages or language in self.languages


@dataclass(frozen=True)
class Match:
    rule: Rule
    text: str  # what matched, as written
    start: int  # offset in the checked text

    def reason(self) -> str:
        """One line for a moderator: the rule, its source, the words."""
        return f"rule {self.rule.id} ({self.rule.source}) matched {self.text!r}"


def check(text: str, language: str | None, rules: Iterable[Rule]) -> list[Match]:
    """Every match of every rule that applies to the language (None: of every rule), rule by rule, in the
    order of the text."""
    return [Match(rule, found.group(), found.start())
            for rule in rules if language is None or rule.applies_to(language) for found in rule.matcher.finditer(text)]


def hold_reasons(matches: Iterable[Match]) -> list[str]:
    """One reason per rule that matched, with its first match: what a held draft's flag says."""
    first: dict[str, Match] = {}
    for match in matches:
        first.setdefault(match.rule.id, match)
    return [match.reason() for match in first.values()]


def matches_in(text: str, rule: Rule) -> list[str]:
    """Everything the rule matches in the text, for its own examples."""
    return [found.group() for found in rule.matcher.finditer(text)]


@cache
def shipped_rules() -> tuple[Rule, ...]:
    """copydesk's own rules, read once."""
    return load_rules(SHIPPED_RULES)


def load_rules(path: Path) -> tuple[Rule, ...]:
    """The rules of a TOML file (`[[rule]]` tables), each checked; RulesError says what is wrong where."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RulesError(f"cannot read rules file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise RulesError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"{path} is not valid TOML: {error}") from None
    extra = sorted(set(data) - {"rule"})
    if extra:
        raise RulesError(f"{path}: unknown key {extra[0]!r}; a rules file holds [[rule]] tables only")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    for number, table in enumerate(tables, start=1):
        rule = _rule(table, f"{path}: rule {table.get('id', f'#{number}')!r}" if isinstance(table, dict)
                     else f"{path}: rule #{number}")
        if any(known.id == rule.id for known in rules):
            raise RulesError(f"{path}: rule {rule.id!r}: the id is used twice")
        rules.append(rule)
    return tuple(rules)


def rules_from_words(words: Sequence[str], source: str = NEVER_WORDS_SOURCE, prefix: str = "never") -> tuple[Rule, ...]:
    """A rule per word or phrase that a server never wants in its copy (any language)."""
    explanation = "This server's moderators asked never to use this in copy."
    return tuple(
        Rule(id=f"{prefix}-{number}", languages=(), source=source, explanation=explanation,
             matcher=_alternation([word.strip()], []))
        for number, word in enumerate(words, start=1) if word.strip()
    )


def _rule(table: Any, where: str) -> Rule:
    if not isinstance(table, dict):
        raise RulesError(f"{where}: must be a table")
    unknown = sorted(set(table) - RULE_KEYS)
    if unknown:
        raise RulesError(f"{where}: unknown key {unknown[0]!r}; a rule has {', '.join(sorted(RULE_KEYS))}")
    for key in ("id", "source", "explanation"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise RulesError(f"{where}: {key} is required (a non-empty string)")
    if not RULE_ID.fullmatch(table["id"]):
        raise RulesError(f"{where}: the id must be lower-case letters, digits, dots and dashes")
    lists = {key: _strings(table, key, where) for key in ("languages", "words", "patterns", "examples", "counter_examples")}
    unknown_languages = [code for code in lists["languages"] if code not in LANGUAGES]
    if unknown_languages:
        raise RulesError(f"{where}: unknown language {unknown_languages[0]!r}; known: {', '.join(LANGUAGES)}")
    if not lists["words"] and not lists["patterns"]:
        raise RulesError(f"{where}: needs words or patterns to match")
    for pattern in lists["patterns"]:
        try:
            re.compile(pattern)
        except re.error as error:
            raise RulesError(f"{where}: pattern {pattern!r} is not a valid regular expression: {error}") from None
    rule = Rule(id=table["id"], languages=lists["languages"], source=table["source"].strip(),
                explanation=" ".join(table["explanation"].split()), matcher=_alternation(lists["words"], lists["patterns"]),
                examples=lists["examples"], counter_examples=lists["counter_examples"])
    for example in rule.examples:
        if not matches_in(example, rule):
            raise RulesError(f"{where}: example {example!r} does not match the rule")
    for counter in rule.counter_examples:
        if found := matches_in(counter, rule):
            raise RulesError(f"{where}: counter-example {counter!r} matches the rule ({found[0]!r})")
    return rule


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = table.get(key, [])
    if not isinstance(values, list) or not all(isinstance(value, str) and value.strip() for value in values):
        raise RulesError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(values)


def _alternation(words: Iterable[str], patterns: Iterable[str]) -> re.Pattern[str]:
    """One expression for a rule: its words (whole words where the script has spaces) or its patterns."""
    parts = [phrase_pattern(word) for word in words]
    parts += [f"(?:{pattern})" for pattern in patterns]
    return re.compile("|".join(parts), re.IGNORECASE)
