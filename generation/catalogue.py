"""The task catalogue: what each kind of draft asks for, how its prompt is written, and its limits.

Tasks are data, so front-ends (terminal, CLI, Discord) build their commands and options from
here, and every draft records the template version it was rendered with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from generation.errors import InputError
from generation.input_text import clean, is_blank
from generation.language import AUTO, LANGUAGES
from generation.platforms.layout import layout_prompt
from generation.platforms.specs import GENERIC, PLATFORM_NAMES, get_platform
from generation.prompt import Prompt
from generation.sampling import Sampling


@dataclass(frozen=True)
class Field:
    name: str
    description: str
    max_chars: int
    required: bool = True
    default: str | None = None
    choices: tuple[str, ...] = ()
    # False for a field added after drafts existed: left out, it is not written into the inputs, so
    # a request that does not use it reads as it always did.
    recorded_default: bool = True


# Variants: the most drafts any task lets one request ask for at once (a Discord message has room, and
# rows of buttons, for four).
MAX_VARIANTS = 4
VARIANTS_DESCRIPTION = "how many drafts to write at once, to pick the best"


@dataclass(frozen=True)
class Task:
    name: str
    command: str
    description: str
    fields: tuple[Field, ...]
    system_prompt: str
    template: str
    template_version: str
    sampling: Sampling
    # The length a draft aims at, in words (0: none), for its quality signals (generation/quality.py).
    target_words: int = 0
    # Choices about the draft that are not part of the template (its language): on the same commands,
    # recorded in their own columns rather than in the inputs.
    options: tuple[Field, ...] = ()
    max_variants: int = 1  # drafts one request may ask for at once, written in one batch; 1: no variants

    def __post_init__(self) -> None:
        if not 1 <= self.max_variants <= MAX_VARIANTS:
            raise ValueError(f"{self.command}: max_variants is 1 to {MAX_VARIANTS}, not {self.max_variants}")

    def check_variants(self, count: int) -> int:
        """The number of variants a request asks for, if this task offers it (1 is a single draft)."""
        if self.max_variants == 1 and count != 1:
            raise InputError(f"{self.command} writes one draft at a time; it takes no variants")
        if not 1 <= count <= self.max_variants:
            raise InputError(f"variants must be between 1 and {self.max_variants} (got {count}); "
                             "1 writes a single draft, more write that many side by side to pick from")
        return count

    def split(self, values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """A front-end's values as the template's inputs and the draft's options, both checked."""
        names = {option.name for option in self.options}
        options = {option.name: self._checked(option, values.get(option.name) or "") for option in self.options}
        return self.validate({name: value for name, value in values.items() if name not in names}), options

    def validate(self, inputs: Mapping[str, str]) -> dict[str, str]:
        """Check inputs against the fields' rules and fill defaults, so nothing malformed is ever stored.

        Control characters and hidden text are removed first (see `generation.input_text`).
        """
        unknown = sorted(set(inputs) - {f.name for f in self.fields})
        if unknown:
            raise InputError(
                f"unknown field {unknown[0]!r} for {self.command}; "
                f"its fields are: {', '.join(f.name for f in self.fields)}"
            )
        return {spec.name: self._checked(spec, inputs.get(spec.name) or "") for spec in self.fields
                if spec.recorded_default or not is_blank(clean(inputs.get(spec.name) or "").strip())}

    def _checked(self, spec: Field, raw: str) -> str:
        value = clean(raw).strip()
        if is_blank(value):
            if spec.required:
                raise InputError(f"{spec.name} is required for {self.command}: {spec.description}")
            value = spec.default or ""
        if len(value) > spec.max_chars:
            raise InputError(
                f"{spec.name} is {len(value)} characters long; "
                f"{self.command} takes at most {spec.max_chars}"
            )
        if spec.choices and value not in spec.choices:
            raise InputError(f"{spec.name} must be one of {', '.join(spec.choices)} (got {value!r})")
        return value

    def render(self, inputs: Mapping[str, str]) -> Prompt:
        values = self.validate(inputs)
        prompt = Prompt(system=self.system_prompt, user=self.template.format(**values))
        platform = get_platform(platform_of(values))
        return layout_prompt(platform, prompt) if platform.structured else prompt

    def template_version_for(self, inputs: Mapping[str, str]) -> str:
        """The version of what `render` makes of these inputs: a platform's layout is part of it."""
        platform = platform_of(inputs)
        return self.template_version if platform == GENERIC else f"{self.template_version}+{platform}-v1"

    def sampling_for(self, inputs: Mapping[str, str]) -> Sampling:
        """The task's sampling, with the token budget a platform's fields need."""
        budget = get_platform(platform_of(inputs)).max_new_tokens
        return replace(self.sampling, max_new_tokens=budget) if budget else self.sampling


def platform_of(inputs: Mapping[str, str]) -> str:
    """The platform a request is written for: `generic` unless it names one."""
    return inputs.get("platform") or GENERIC


TONES = ("friendly", "professional", "playful", "bold", "luxurious")
LANGUAGE = Field("language", "the language to write in (auto: the server's, else the request's)", max_chars=8,
                 required=False, default=AUTO, choices=(AUTO, *LANGUAGES))


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="ad",
            command="/draft ad",
            description="A short advertisement for a product.",
            fields=(
                Field("product", "what is being advertised", max_chars=200),
                Field("audience", "who the ad speaks to", max_chars=200),
                Field("tone", "the voice of the ad", max_chars=20, required=False,
                      default="friendly", choices=TONES),
                Field("platform", "where the ad runs: its fields, limits and character counts", max_chars=10,
                      required=False, default=GENERIC, choices=PLATFORM_NAMES, recorded_default=False),
            ),
            system_prompt=(
                "You are a skilled copywriter. Write one short, catchy advertisement: "
                "a headline and two or three sentences. Do not explain what you are doing."
            ),
            template="Write a {tone} advertisement for {product}, aimed at {audience}.",
            template_version="ad-v1",
            target_words=50,
            options=(LANGUAGE,),
            sampling=Sampling(max_new_tokens=120, temperature=0.8, top_p=0.9, top_k=50),
            max_variants=MAX_VARIANTS,
        ),
        Task(
            name="blog",
            command="/write blog",
            description="A blog post on a topic.",
            fields=(
                Field("topic", "what the post is about", max_chars=200),
                Field("audience", "who reads the post", max_chars=200, required=False,
                      default="a general audience"),
                Field("tone", "the voice of the post", max_chars=20, required=False,
                      default="friendly", choices=TONES),
                Field("length", "how long the post is", max_chars=10, required=False,
                      default="short", choices=("short", "medium", "long")),
            ),
            system_prompt=(
                "You are an experienced blog writer. Write a well-structured blog post with a title "
                "and clear paragraphs. Do not explain what you are doing."
            ),
            template="Write a {length}, {tone} blog post about {topic} for {audience}.",
            template_version="blog-v1",
            target_words=300,
            options=(LANGUAGE,),
            sampling=Sampling(max_new_tokens=400, temperature=0.7, top_p=0.9, top_k=50),
            max_variants=MAX_VARIANTS,
        ),
        Task(
            name="summary",
            command="/summarize",
            description="A summary of a text.",
            fields=(
                Field("text", "the text to summarize", max_chars=6000),
                Field("style", "paragraph or bullet points", max_chars=10, required=False,
                      default="paragraph", choices=("paragraph", "bullets")),
            ),
            system_prompt=(
                "You summarize texts faithfully and briefly. Keep only the main points and "
                "never add facts that are not in the text."
            ),
            template="Summarize the following text as a short {style}.\n\nText:\n{text}",
            template_version="summary-v1",
            target_words=80,
            options=(LANGUAGE,),
            sampling=Sampling(max_new_tokens=160, temperature=0.3, top_p=0.9, top_k=40),
            max_variants=MAX_VARIANTS,
        ),
    )
}


def get_task(name: str) -> Task:
    """Look a task up by name, with an error that lists the ones that exist."""
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
