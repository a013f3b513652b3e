"""Template versions: a moderator's system prompt, template and brand voice for a task, checked before use.

The catalogue's built-in prompt is each task's first version (`ad-v1`); later ones are named
`<task>-vN` by the use case that stores them. A version is checked before it is stored: its
placeholders must be the task's fields, and its longest prompt (every field at its limit) plus the
task's token budget must fit the engine's context, so a draft never fails on it later.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from generation.catalogue import Task, platform_of
from generation.errors import InputError
from generation.platforms.specs import PLATFORM_NAMES
from generation.prompt import Prompt

# Without the engine's tokenizer (a model served over HTTP): one token per 3.5 bytes of UTF-8, plus 8 per
# message for the chat template. The tokenizers of instruct models average 4 to 5 bytes a token on English,
# so this counts more tokens than there are: a version it lets through fits.
BYTES_PER_TOKEN_ESTIMATE = 3.5
MESSAGE_OVERHEAD_ESTIMATE = 8
# Text that stands for a field at its limit when the longest prompt is counted: plain English words, which
# tokenize as a member's request does (a run of one letter would merge into a few tokens).
FILLER = "the quick brown fox jumps over the lazy dog while our team writes clear copy "
MAX_WORD_CHARS = 60  # a brand-voice word is a word or a short phrase
# The request a version is previewed on, per task; a task not listed gets each required field's description.
SAMPLE_REQUESTS: dict[str, dict[str, str]] = {
    "ad": {"product": "a reusable steel water bottle that keeps drinks cold for 24 hours",
           "audience": "weekend hikers"},
    "blog": {"topic": "three habits that make remote teams communicate better", "audience": "team leads"},
    "summary": {"text": "The city council met on Tuesday to discuss the new bike lanes. Most members supported "
                        "extending the lanes to the harbour by next spring, paid for by the transport budget. "
                        "Two members asked for a study of the effect on local shops first; it will be ready in March."},
}


@dataclass(frozen=True)
class BrandVoice:
    """How the server's copy sounds: tone words, words to use, words never to use, a sample of house copy."""

    tone: tuple[str, ...] = ()
    use: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    sample: str = ""

    def instructions(self) -> str:
        """The voice as plain instructions for the system prompt; empty when nothing is set."""
        lines = []
        if self.tone:
            lines.append(f"- Tone: {', '.join(self.tone)}.")
        if self.use:
            lines.append(f"- Use these words where they fit: {', '.join(self.use)}.")
        if self.avoid:
            lines.append(f"- Never use these words: {', '.join(self.avoid)}.")
        if self.sample.strip():
            lines.append(f'- Write in the style of this sample of our copy:\n"""\n{self.sample.strip()}\n"""')
        return "Brand voice:\n" + "\n".join(lines) if lines else ""

    def as_dict(self) -> dict[str, Any]:
        return {"tone": list(self.tone), "use": list(self.use), "avoid": list(self.avoid), "sample": self.sample}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> BrandVoice:
        return cls(tone=tuple(stored.get("tone", ())), use=tuple(stored.get("use", ())),
                   avoid=tuple(stored.get("avoid", ())), sample=str(stored.get("sample", "")))


@dataclass(frozen=True)
class PromptTemplate:
    """One version of a task's prompt; never edited once stored."""

    name: str
    task: str
    system_prompt: str
    template: str
    brand_voice: BrandVoice = BrandVoice()


def words(text: str, what: str) -> tuple[str, ...]:
    """Brand-voice words as written in a form or on a command line: separated by commas or new lines."""
    found: list[str] = []
    for word in (part.strip() for line in text.splitlines() for part in line.split(",")):
        if len(word) > MAX_WORD_CHARS:
            raise InputError(f"{what}: {word[:20]!r}… is {len(word)} characters long; write words or short phrases "
                             f"of at most {MAX_WORD_CHARS}, separated by commas")
        if word and word not in found:
            found.append(word)
    return tuple(found)


def sample_request(task: Task) -> dict[str, str]:
    """The request a version is previewed on."""
    return SAMPLE_REQUESTS.get(task.name) or {spec.name: spec.description for spec in task.fields if spec.required}


def builtin(task: Task) -> PromptTemplate:
    """The catalogue's own prompt: the task's first version, which has no row."""
    return PromptTemplate(task.template_version, task.name, task.system_prompt, task.template)


def version_name(task_name: str, number: int) -> str:
    """`ad-v2`, `ad-v3`…: the name of a task's version `number` (1 is the built-in)."""
    return f"{task_name}-v{number}"


@dataclass(frozen=True)
class VoicedTask(Task):
    """A task rendering with a version whose brand voice also reaches platform drafts, whose layout writes
    a system prompt of its own."""

    brand_voice: str = ""

    def render(self, inputs: Mapping[str, str]) -> Prompt:
        prompt = super().render(inputs)
        if not self.brand_voice or prompt.system == self.system_prompt:
            return prompt
        return Prompt(f"{prompt.system}\n\n{self.brand_voice}", prompt.user)


def apply(task: Task, template: PromptTemplate) -> Task:
    """The task rendering with this version: its system prompt (the brand voice written in), its template."""
    voice = template.brand_voice.instructions()
    system = f"{template.system_prompt.strip()}\n\n{voice}" if voice else template.system_prompt.strip()
    same = {spec.name: getattr(task, spec.name) for spec in fields(Task)}
    return replace(VoicedTask(**same), system_prompt=system, template=template.template,
                   template_version=template.name, brand_voice=voice)


def check(task: Task, template: PromptTemplate, *, context_tokens: int,
          count_tokens: Callable[[Prompt], int]) -> None:
    """Refuse, with the reason, a version a draft could fail on: placeholders that are not the task's
    fields, or a longest prompt that leaves its token budget no room in `context_tokens`."""
    check_text(task, template)
    applied = apply(task, template)
    for inputs in _longest_requests(task):
        prompt_tokens = count_tokens(applied.render(inputs))
        budget = applied.sampling_for(inputs).max_new_tokens
        if prompt_tokens + budget > context_tokens:
            platform = platform_of(inputs)
            where = "" if platform == "generic" else f" for {platform}"
            raise InputError(
                f"this version leaves no room in the model's context{where}: with every field at its limit the "
                f"prompt is {prompt_tokens} tokens, and with the {budget} tokens a {task.name} may write that is "
                f"{prompt_tokens + budget}, over the context of {context_tokens}; shorten the system prompt, "
                "the template or the sample of house copy")


def estimate_tokens(prompt: Prompt) -> int:
    """A count of the prompt's tokens that errs high, where the engine's tokenizer is not at hand."""
    return sum(round(len(message["content"].encode()) / BYTES_PER_TOKEN_ESTIMATE) + MESSAGE_OVERHEAD_ESTIMATE
               for message in prompt.messages())


def check_text(task: Task, version: PromptTemplate) -> None:
    """The part of `check` that needs no tokenizer, so a front-end can refuse a version before loading a model."""
    if not version.system_prompt.strip():
        raise InputError("the system prompt is empty; write what the model is and what it writes")
    _check_placeholders(task, version.template)


def _check_placeholders(task: Task, template: str) -> None:
    names = [spec.name for spec in task.fields]
    allowed = ", ".join(f"{{{name}}}" for name in names)
    if not template.strip():
        raise InputError(f"the template is empty; write the request, with placeholders among {allowed}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise InputError(f"the template's braces do not match ({error}); a placeholder is written {{name}}, "
                         "and a brace meant as text is doubled: {{ or }}") from None
    used = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise InputError(f"the template has a positional placeholder {{{name}}}; name the field instead, "
                             f"one of {allowed}")
        if any(mark in name for mark in ".["):
            raise InputError(f"the placeholder {{{name}}} reaches into a field; use the field itself, one of {allowed}")
        if name not in names:
            raise InputError(f"unknown placeholder {{{name}}} for {task.name}; its fields are {allowed}")
        if spec or conversion:
            raise InputError(f"the placeholder {{{name}}} carries a format ({name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}); write it plainly as {{{name}}}")
        used.add(name)
    missing = [spec.name for spec in task.fields if spec.required and spec.name not in used]
    if missing:
        raise InputError(f"the template leaves out {{{missing[0]}}}, which every {task.name} request gives; "
                         "without it the model never sees it")


def _longest_requests(task: Task) -> list[dict[str, str]]:
    """Every field at its limit (a choice at its longest), once per platform where the task has platforms:
    each platform lays the prompt out and budgets tokens its own way."""
    inputs = {spec.name: (max(spec.choices, key=len) if spec.choices else _filler(spec.max_chars))
              for spec in task.fields}
    if "platform" not in inputs:
        return [inputs]
    return [{**inputs, "platform": platform} for platform in PLATFORM_NAMES]


def _filler(chars: int) -> str:
    return (FILLER * (chars // len(FILLER) + 1))[:chars].strip() or "x"
