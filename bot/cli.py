"""The `copydesk` command line: the terminal front-end, one-shot drafts for scripts, and exports."""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import discord
from tqdm import tqdm

from bot.app import open_service
from bot.config import ConfigError, Settings, load_settings
from bot.console import Console, variant_lines
from bot.discord.client import publish_commands, run_bot
from bot.errors import MEMBER_ERRORS
from bot.experiments import SPEC_HELP, VariantSpec, experiment_heading
from bot.service import DraftProgress, DraftService, Member
from bot.stats import stats_title, version_table
from bot.versions import ModelVersions
from generation import TASKS, VARIANTS_DESCRIPTION, Field, GenerationError, Task, get_task
from generation.compliance import RulesError, load_rules
from generation.compliance import check as compliance_check
from generation.language import AUTO, LANGUAGES
from generation.platforms import PlatformDraft, get_platform
from generation.templates import BrandVoice, PromptTemplate, check_text, words
from generation.training import METHODS
from storage import (
    EXPORT_CHOICES,
    EXPORT_FORMATS,
    Assignment,
    DatasetSummary,
    DraftStatus,
    FeedbackFilter,
    Reason,
    StorageError,
    backup_database,
    formats_help,
    formats_list,
    restore_database,
)
from storage.atomic import replacing
from storage.card import CARD

# Beyond the member's own mistakes, the operator at the command line can fix the config, the database,
# the model and the files it names (a folder it may not write, a full disk).
OPERATOR_ERRORS: tuple[type[Exception], ...] = (*MEMBER_ERRORS, ConfigError, StorageError, GenerationError, OSError)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
T = TypeVar("T")


@contextmanager
def _user_errors(writing: Path | None = None) -> Iterator[None]:
    """Turn the errors a user can fix into a one-line message instead of a traceback; a file
    error names `writing`, what the command was writing, as well as the file the system names."""
    try:
        yield
    except OPERATOR_ERRORS as error:
        raise click.ClickException(_one_line(error, writing)) from None


def _one_line(error: Exception, writing: Path | None) -> str:
    if not isinstance(error, OSError) or not error.strerror:
        return str(error)
    if writing is None:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    named = f" ({error.filename})" if error.filename and str(error.filename) != str(writing) else ""
    return f"cannot write {writing}: {error.strerror}{named}"


def _run(coroutine: Coroutine[Any, Any, T], writing: Path | None = None) -> T:
    with _user_errors(writing):
        return asyncio.run(coroutine)


class _Path(click.Path):
    """click's Path, refusing an empty name (click would read it as the current folder) and, where a
    file is asked for, anything that is not a regular file (a device such as /dev/full, a pipe)."""

    def __init__(self, *, file_okay: bool = True, dir_okay: bool = True) -> None:
        super().__init__(path_type=Path, file_okay=file_okay, dir_okay=dir_okay)

    def convert(self, value: Any, param: click.Parameter | None, context: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("the path is empty", param, context)
        path = cast(Path, super().convert(value, param, context))
        if not self.dir_okay and path.exists() and not path.is_file():
            self.fail(f"{path} is not a regular file", param, context)
        return path


def _settings(context: click.Context) -> Settings:
    with _user_errors():
        return load_settings(context.obj)


@click.group()
@click.option("--config", "config_path", type=_Path(dir_okay=False),
              help="TOML config file (default: ./config.toml if present, or $COPYDESK_CONFIG).")
@click.pass_context
def main(context: click.Context, config_path: Path | None) -> None:
    """copydesk drafts ads, blog posts and summaries on a local 4-bit model and learns from your feedback."""
    context.obj = config_path


@main.command()
@click.option("--user", default=getpass.getuser, show_default="your login name", help="Who the drafts belong to.")
@click.pass_context
def console(context: click.Context, user: str) -> None:
    """Open the terminal front-end: draft, rate, regenerate, improve and flag interactively."""
    settings = _settings(context)

    async def session() -> None:
        click.echo("loading the model…", err=True)
        async with open_service(settings) as service:
            await Console(service, Member(f"console:{user}"), sys.stdout, _read_line).run()

    _run(session())


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


class _TaskCommands(click.Group):
    """A subcommand per task in the catalogue, built when asked for, so each task is one catalogue entry."""

    def list_commands(self, context: click.Context) -> list[str]:
        return list(TASKS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        return _draft_command(TASKS[name]) if name in TASKS else None


@main.group(cls=_TaskCommands)
def draft() -> None:
    """Write one draft and print it as it streams (for scripts); it is stored like any other."""


def _draft_command(task: Task) -> click.Command:
    @click.pass_context
    def command(context: click.Context, user: str, as_json: bool, variants: int = 1, **fields: str | None) -> None:
        settings = _settings(context)
        inputs = {name: value for name, value in fields.items() if value is not None}
        member = Member(f"cli:{user}")
        if variants != 1:
            if not _run(_variants(settings, task.name, inputs, member, variants, as_json)):
                context.exit(1)
        elif _run(_one_shot(settings, task.name, inputs, member, as_json)) != DraftStatus.DONE:
            context.exit(1)

    params: list[click.Parameter] = [
        click.Option([f"--{field.name}"], required=False, help=_field_help(field)) for field in (*task.fields, *task.options)
    ]
    params.append(click.Option(["--user"], default=getpass.getuser, show_default="your login name",
                               help="Who the draft belongs to."))
    params.append(click.Option(["--json", "as_json"], is_flag=True,
                               help="Print the finished draft as JSON (a platform draft: its fields and their counts)."))
    if task.max_variants > 1:
        params.append(click.Option(["--variants"], type=int, default=1, show_default=True,
                                   help=f"{VARIANTS_DESCRIPTION.capitalize()}, 1 to {task.max_variants}."))
    return click.Command(task.name, callback=command, params=params, help=task.description)


def _field_help(field: Field) -> str:
    parts = [field.description, f"at most {field.max_chars} characters"]
    if field.choices:
        parts.append("one of " + ", ".join(field.choices))
    if not field.required:
        parts.append(f"default: {field.default}")
    return "; ".join(parts) + ("" if not field.required else " (required)")


async def _one_shot(settings: Settings, task_name: str, inputs: dict[str, str], member: Member,
                    as_json: bool = False) -> DraftStatus:
    fields, options = get_task(task_name).split(inputs)  # fail before spending seconds on loading the model
    async with open_service(settings) as service:
        created = await service.create_draft(member, task_name, fields, language=options.get("language", AUTO))
        printed = ""
        async for progress in service.generate(created.id):
            stable = progress.text.rstrip("\ufffd")
            if not as_json and stable.startswith(printed):
                click.echo(stable[len(printed):], nl=False)
                printed = stable
        if as_json:
            click.echo(json.dumps(_draft_json(created.id, created.platform, progress), ensure_ascii=False, indent=2))
        else:
            click.echo()
        message = f"draft #{created.id} {progress.status}"
        click.echo(message + (f": {progress.error}" if progress.error else ""), err=True)
        return progress.status


async def _variants(settings: Settings, task_name: str, inputs: dict[str, str], member: Member, count: int,
                    as_json: bool = False) -> bool:
    """Write `count` variants together and print them one after the other (as a JSON list with --json); True
    when all were finished."""
    task = get_task(task_name)
    fields, options = task.split(inputs)  # fail before spending seconds on loading the model
    task.check_variants(count)
    async with open_service(settings) as service:
        drafts = await service.create_variants(member, task_name, fields, count, language=options.get("language", AUTO))
        snapshot: tuple[DraftProgress, ...] = ()
        async for snapshot in service.generate_together([draft.id for draft in drafts]):
            pass
        if as_json:
            shown = [_draft_json(draft.id, draft.platform, progress) for draft, progress in zip(drafts, snapshot, strict=True)]
            click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        else:
            click.echo("\n".join(variant_lines(drafts, snapshot)))
        statuses = ", ".join(f"#{draft.id} {progress.status}" for draft, progress in zip(drafts, snapshot, strict=True))
        click.echo(f"variants {statuses}", err=True)
        return all(progress.status == DraftStatus.DONE for progress in snapshot)


class _CheckFailed(click.ClickException):
    """`copydesk check` could not check (bad rules file, unreadable copy): exit 2, as for bad usage,
    since 1 means a rule matched."""

    exit_code = 2


@main.command()
@click.option("--rules", "rule_files", type=_Path(dir_okay=False), multiple=True,
              help="A rules file (the format of generation/rules/compliance.toml) to check with as well (repeatable).")
@click.option("--text", "texts", multiple=True, help="Copy to check, instead of FILEs (repeatable).")
@click.option("--language", type=click.Choice(list(LANGUAGES)),
              help="Check with the rules of this language only [default: every rule, whatever its language].")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_context
def check(context: click.Context, rule_files: tuple[Path, ...], texts: tuple[str, ...], language: str | None,
          files: tuple[Path, ...]) -> None:
    """Check copy (FILEs, - for standard input, or --text) against the compliance rules: copydesk's own, the
    config's compliance_rules_file and never_words, and --rules. Prints FILE:LINE:COLUMN, rule id, source and
    match for each; exits 1 when a rule matches, 0 when none does, 2 when it could not check."""
    if bool(texts) == bool(files):
        raise click.UsageError("give the copy to check as --text … or as FILE…, one of the two", context)
    try:
        rules = load_settings(context.obj).moderation.compliance_rules()
        rules += tuple(rule for path in rule_files for rule in load_rules(path))
        copies = [(f"--text {number}", text) for number, text in enumerate(texts, start=1)] or \
                 [(str(path), _read_copy(path)) for path in files]
    except (ConfigError, RulesError, OSError, UnicodeDecodeError) as error:
        raise _CheckFailed(str(error)) from None
    matched = False
    for name, text in copies:
        for match in compliance_check(text, language, rules):
            matched = True
            line = text.count("\n", 0, match.start) + 1
            column = match.start - (text.rfind("\n", 0, match.start) + 1) + 1
            click.echo(f"{name}:{line}:{column}: {match.rule.id} ({match.rule.source}): {match.text!r} — "
                       f"{match.rule.explanation}")
    context.exit(1 if matched else 0)


def _read_copy(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise OSError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise OSError(f"cannot read {path}: {error.strerror or error}") from None


def _draft_json(draft_id: int, platform: str, progress: DraftProgress) -> dict[str, Any]:
    """The finished draft for a script: its text, and a platform draft's fields, counts and limits."""
    shown: dict[str, Any] = {"draft": draft_id, "status": str(progress.status), "platform": platform,
                             "held": progress.held, "text": progress.text}
    if progress.error:
        shown["error"] = progress.error
    if progress.fields is not None:
        shown.update(_fields_json(progress.fields))
    return shown


def _fields_json(fields: PlatformDraft) -> dict[str, Any]:
    rule = get_platform(fields.platform).rule
    return {"counting": {"rule": rule.name, "source": rule.source}, "fits": fields.fits,
            "fields": [{"label": field.label, "text": field.text, "count": field.count, "limit": field.limit,
                        "recommended": field.recommended, "status": str(field.status),
                        "regenerations": field.regenerations} for field in fields.fields]}


TOKEN_VARIABLE = "COPYDESK_DISCORD_TOKEN"
NO_TOKEN = (
    f"no Discord bot token: set {TOKEN_VARIABLE} in the environment. Create a bot at "
    "https://discord.com/developers/applications (Bot → Reset Token), invite it with the "
    "applications.commands and bot scopes, then run `copydesk sync` once. "
    "To try copydesk without Discord, run `copydesk console`."
)


def _token() -> str:
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise click.ClickException(NO_TOKEN)
    return token


@main.command()
@click.pass_context
def run(context: click.Context) -> None:
    """Start the Discord bot (token from $COPYDESK_DISCORD_TOKEN). Commands are published by `copydesk sync`."""
    settings, token = _settings(context), _token()

    discord.utils.setup_logging()
    _run(run_bot(settings, token))


@main.command()
@click.option("--guild", type=int, help="Publish to one guild only (instant), instead of globally.")
@click.pass_context
def sync(context: click.Context, guild: int | None) -> None:
    """Publish the slash commands to Discord; run it on deploy, not on every start."""
    token = _token()

    async def publish() -> None:
        commands = await publish_commands(token, guild)
        where = f"guild {guild}" if guild else "all guilds (global; may take up to an hour to appear)"
        click.echo(f"published {len(commands)} commands to {where}")

    _run(publish())


@main.command()
@click.pass_context
def status(context: click.Context) -> None:
    """Show the last hour's drafts by status and the tokens written per second."""
    settings = _settings(context)

    async def show() -> None:
        async with open_service(settings, with_model=False) as service:
            for line in (await service.status()).lines():
                click.echo(line)

    _run(show())


@main.command()
@click.option("--task", type=click.Choice(list(TASKS)), help="Only this task's drafts.")
@click.option("--since", type=click.DateTime(DATE_FORMATS), help="Drafts created on or after this date (UTC).")
@click.option("--experiment", "experiment_id", type=int,
              help="Per variant of this experiment (its number in `copydesk experiment list`), with head-to-head wins.")
@click.option("--chart", type=_Path(dir_okay=False), help="Also write the chart (PNG) to this file.")
@click.pass_context
def stats(context: click.Context, task: str | None, since: datetime | None, experiment_id: int | None,
          chart: Path | None) -> None:
    """Which model version writes better: per version, drafts and the team's feedback, and the verdict."""
    settings = _settings(context)

    async def show() -> None:
        async with open_service(settings, with_model=False) as service:
            if experiment_id is not None:
                report = await service.experiments.report(task or "", experiment_id)
                lines, title = report.table(service.decision_rule), f"copydesk · experiment #{experiment_id}"
            else:
                tallies = await service.version_tallies(task=task, since=_utc(since))
                if not tallies:
                    click.echo("no finished drafts" + (f" of {task}" if task else "") + (" since then" if since else ""))
                    return
                lines, title = version_table(tallies, service.decision_rule), stats_title(task, since)
            for line in lines:
                click.echo(line)
            if chart is not None:
                png = await service.stats_chart(title, task=task, since=_utc(since), experiment_id=experiment_id)
                with replacing(chart) as partial:
                    partial.write_bytes(png)
                click.echo(f"chart: {chart}")

    _run(show(), writing=chart)


@dataclass(frozen=True)
class _Selection:
    """The export options `export` and `train` share: which drafts, and the rules that make rows of them."""

    filters: FeedbackFilter
    min_votes: int | None
    min_rating: float | None
    test_fraction: float | None


def _selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that choose drafts and shape rows; the command receives them as one `selection`."""
    options = [
        click.option("--since", type=click.DateTime(DATE_FORMATS), help="Drafts created on or after this date (UTC)."),
        click.option("--until", type=click.DateTime(DATE_FORMATS), help="Drafts created before this date (UTC)."),
        click.option("--task", "tasks", type=click.Choice(list(TASKS)), multiple=True,
                     help="Only these tasks (repeatable)."),
        click.option("--guild", help="Only drafts made in this Discord server (its id)."),
        click.option("--model", "models", multiple=True, help="Only drafts of this model (repeatable)."),
        click.option("--template-version", "template_versions", multiple=True,
                     help="Only drafts of this prompt template version, e.g. ad-v1 (repeatable)."),
        click.option("--min-votes", type=click.IntRange(min=0),
                     help="Votes a rating needs to count [config: export.min_votes]."),
        click.option("--min-rating", type=click.FloatRange(-1, 1),
                     help="Mean rating a draft needs for SFT [config: export.rating_threshold]."),
        click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True),
                     help="Share of prompts in the test split [config: export.test_fraction]."),
    ]

    @functools.wraps(command)
    def with_selection(*args: Any, since: datetime | None, until: datetime | None, tasks: tuple[str, ...],
                       guild: str | None, models: tuple[str, ...], template_versions: tuple[str, ...],
                       min_votes: int | None, min_rating: float | None, test_fraction: float | None,
                       **kwargs: Any) -> Any:
        if since is not None and until is not None and since >= until:
            raise click.UsageError(f"--since ({since:%Y-%m-%d %H:%M}) is not before --until ({until:%Y-%m-%d %H:%M}): "
                                   "no draft can match")
        filters = FeedbackFilter(since=_utc(since), until=_utc(until), tasks=tasks, guild_id=guild, models=models,
                                 template_versions=template_versions)
        return command(*args, selection=_Selection(filters, min_votes, min_rating, test_fraction), **kwargs)

    for option in reversed(options):
        with_selection = option(with_selection)
    return with_selection


@main.command()
@click.option("--out", type=_Path(file_okay=False), required=True,
              help="Folder to write: <format>-train.jsonl, <format>-test.jsonl, raw-*.parquet, ads-<platform>.csv "
                   "and README.md.")
@click.option("--format", "formats", type=click.Choice(EXPORT_CHOICES), multiple=True,
              help=f"{formats_help()}. Repeat for several; default: all ({formats_list()}); ads only when named.")
@_selection_options
@click.option("--progress/--no-progress", default=None, help="Show a progress bar on stderr [default: when it is a terminal].")
@click.pass_context
def export(context: click.Context, out: Path, formats: tuple[str, ...], selection: _Selection,
           progress: bool | None) -> None:
    """Write the team's rated drafts and improvements as a training dataset (SFT, DPO, KTO, raw) with its card."""
    settings = _settings(context)
    filters = selection.filters

    async def write() -> None:
        async with open_service(settings, with_model=False) as service:
            total = await service.count_for_export(filters)
            with tqdm(total=total, unit="drafts", desc="export", file=sys.stderr, disable=_no_bar(progress)) as bar:
                summary = await service.export(out, formats=formats or EXPORT_FORMATS, filters=filters,
                                               rating_threshold=selection.min_rating, min_votes=selection.min_votes,
                                               test_fraction=selection.test_fraction, progress=bar.update)
        for line in summary.lines():
            click.echo(line)
        if hint := _consent_hint(summary):
            click.echo(hint)
        click.echo(f"wrote {out} (dataset card: {out / CARD})")

    _run(write(), writing=out)


@main.command()
@click.argument("name")
@click.option("--from", "export_from", type=_Path(file_okay=False),
              help="Train on this export folder (`copydesk export --out`); without it, export first, with the options below.")
@_selection_options
@click.option("--method", type=click.Choice(METHODS), help="Trainer(s): SFT, DPO, KTO, or SFT then DPO [config: training.method].")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the rows [config: training.epochs].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the run (data order, LoRA init).")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop each phase after this many steps (a quick try).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Torch threads [config: training.threads; default: all cores, half while the bot runs].")
@click.option("--resume", is_flag=True, help="Continue NAME's interrupted run from its last checkpoint.")
@click.pass_context
def train(context: click.Context, name: str, export_from: Path | None, selection: _Selection, method: str | None,
          epochs: float | None, seed: int, max_steps: int | None, threads: int | None, resume: bool) -> None:
    """Train model version NAME (a LoRA adapter on the 4-bit base) on the team's feedback, and evaluate it.

    Ctrl-C or SIGTERM saves a checkpoint and stops; --resume continues. Nothing is registered until the
    version's folder is complete. On GPU machines: `accelerate launch -m bot.cli train NAME …`.
    """
    settings = _settings(context)
    with _user_errors():
        config = settings.training.config(method=method, epochs=epochs, seed=seed, max_steps=max_steps,
                                          threads=threads)

    async def run_training() -> None:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, _stopping, stop, loop)
        async with open_service(settings, with_model=False) as service:
            async def export_first(folder: Path) -> DatasetSummary:
                summary = await service.export(folder, filters=selection.filters, rating_threshold=selection.min_rating,
                                               min_votes=selection.min_votes, test_fraction=selection.test_fraction)
                click.echo("exported: " + "; ".join(summary.lines()), err=True)
                return summary

            trained = await service.versions.train(
                name, config, export_from=export_from, export=export_first, stop=stop, resume=resume,
                on_progress=lambda progress: click.echo(f"\r{progress.line()}\033[K", nl=False, err=True))
        click.echo(err=True)
        version = trained.version
        click.echo(f"trained {version.name} ({version.method}, {version.wall_time_s:.0f} s) into {version.folder}")
        click.echo(f"evaluated against {trained.incumbent} on the export's test split:")
        click.echo(trained.evaluation.table())
        click.echo(f"serve it with `copydesk models serve {version.name}`")

    _run(run_training())


def _stopping(stop: threading.Event, loop: asyncio.AbstractEventLoop) -> None:
    """The first Ctrl-C or SIGTERM stops training at the end of its step, with a checkpoint; a second one
    ends the process at once. Either way nothing is registered."""
    click.echo("\nstopping after this step and saving a checkpoint (again to quit at once)…", err=True)
    stop.set()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signal_number)


@main.group()
def models() -> None:
    """The trained model versions: list, show, serve (switches the running bot), retire."""


@models.command("list")
@click.pass_context
def models_list(context: click.Context) -> None:
    """Every version, with its state, method and evaluation."""
    settings = _settings(context)

    async def show() -> None:
        async with open_service(settings, with_model=False) as service:
            serving = await service.versions.serving()
            versions = await service.versions.list()
        click.echo(f"serving: {serving}")
        for version in versions:
            click.echo(f"{version.name}\t{version.state}\t{version.method}\t{version.created_at:%Y-%m-%d %H:%M}\t"
                       f"{_scores(version.evaluation, version.name)}")

    _run(show())


@models.command("show")
@click.argument("name")
@click.pass_context
def models_show(context: click.Context, name: str) -> None:
    """One version's facts: provenance, hyperparameters, evaluation."""
    settings = _settings(context)

    async def show() -> None:
        async with open_service(settings, with_model=False) as service:
            version = await service.versions.show(name)
        for key in ("name", "state", "base_model", "base_sha256", "folder", "adapter_sha256", "method", "seed",
                    "wall_time_s", "created_at"):
            click.echo(f"{key}: {getattr(version, key)}")
        for key in ("hyperparameters", "libraries", "source_export", "evaluation"):
            click.echo(f"{key}: {json.dumps(getattr(version, key), sort_keys=True)}")

    _run(show())


def _state_command(name: str, help_text: str, change: Callable[[ModelVersions, str, str], Awaitable[str]]) -> None:
    """`copydesk models serve|retire NAME`: one change of a version's state, logged with who made it."""

    @models.command(name, help=help_text)
    @click.argument("version")
    @click.option("--user", default=getpass.getuser, show_default="your login name", help="Who does it (for the log).")
    @click.pass_context
    def command(context: click.Context, version: str, user: str) -> None:
        settings = _settings(context)

        async def act() -> str:
            async with open_service(settings, with_model=False) as service:
                return await change(service.versions, version, f"cli:{user}")

        click.echo(_run(act()))


async def _serve(versions: ModelVersions, name: str, by: str) -> str:
    await versions.serve(name, by=by)
    return (f"serving {name}; a running bot switches within its training.version_check_s "
            "(drafts already being written finish on their version)")


async def _retire(versions: ModelVersions, name: str, by: str) -> str:
    await versions.retire(name, by=by)
    return f"retired {name}"


_state_command("serve", "Send new drafts to VERSION (`base`: the model without an adapter); a running bot follows.",
               _serve)
_state_command("retire", "Never serve VERSION again; its row and folder stay for the drafts it wrote.", _retire)


@main.group()
def experiment() -> None:
    """Blind experiments between versions of a task: start, status, stop, promote, rollback, list."""


def _as_operator(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--user", default=getpass.getuser, show_default="your login name",
                        help="Who does it (for the moderation log).")(command)


def _print_lines(context: click.Context, act: Callable[[DraftService], Awaitable[list[str]]]) -> None:
    """Run one use case on the service, opened without a model, and print the lines it returns."""
    settings = _settings(context)

    async def lines() -> list[str]:
        async with open_service(settings, with_model=False) as service:
            return await act(service)

    for line in _run(lines()):
        click.echo(line)


@experiment.command("start")
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--variant", "variants", multiple=True, required=True, metavar="SPEC",
              help=f"One variant (2 to 4 of them): {SPEC_HELP}.")
@click.option("--assignment", type=click.Choice([choice.value for choice in Assignment]),
              help="Per draft (drawn by shares) or per member (sticky) [config: experiments.assignment].")
@_as_operator
@click.pass_context
def experiment_start(context: click.Context, task: str, variants: tuple[str, ...], assignment: str | None,
                     user: str) -> None:
    """Start an experiment on TASK: new drafts go to its variants by their shares; members are not told which."""
    async def start(service: DraftService) -> list[str]:
        specs = [VariantSpec.parse(text) for text in variants]
        started = await service.experiments.start(task, specs, by=f"cli:{user}",
                                                  assignment=Assignment(assignment) if assignment else None)
        return experiment_heading(started)
    _print_lines(context, start)


@experiment.command("status")
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--id", "experiment_id", type=int, help="An earlier experiment (default: the running or latest one).")
@click.pass_context
def experiment_status(context: click.Context, task: str, experiment_id: int | None) -> None:
    """Per variant: drafts, 👍 rate with its interval, head-to-head wins, chance to be best; then the verdict."""
    async def status(service: DraftService) -> list[str]:
        return (await service.experiments.report(task, experiment_id)).table(service.decision_rule)
    _print_lines(context, status)


@experiment.command("promote")
@click.argument("task", type=click.Choice(list(TASKS)))
@click.argument("variant", required=False)
@_as_operator
@click.pass_context
def experiment_promote(context: click.Context, task: str, variant: str | None, user: str) -> None:
    """Make VARIANT (default: the rule's winner) what TASK serves, and end the experiment."""
    async def promote(service: DraftService) -> list[str]:
        arm = await service.experiments.promote(task, variant, by=f"cli:{user}")
        return [f"{task} now serves model {arm.model_version} with template {arm.template_version} "
                f"(variant {arm.label}); `copydesk experiment rollback {task}` goes back"]
    _print_lines(context, promote)


def _experiment_change(name: str, help_text: str, change: Callable[[DraftService, str, str], Awaitable[str]]) -> None:
    """`copydesk experiment stop|rollback TASK`: one change to what TASK serves, logged with who made it."""

    @experiment.command(name, help=help_text)
    @click.argument("task", type=click.Choice(list(TASKS)))
    @_as_operator
    @click.pass_context
    def command(context: click.Context, task: str, user: str) -> None:
        async def act(service: DraftService) -> list[str]:
            return [await change(service, task, f"cli:{user}")]
        _print_lines(context, act)


async def _stop(service: DraftService, task: str, by: str) -> str:
    stopped = await service.experiments.stop(task, by=by)
    return f"stopped experiment #{stopped.id} on {stopped.task}; it serves what it served before"


async def _rollback(service: DraftService, task: str, by: str) -> str:
    route = await service.experiments.rollback(task, by=by)
    return f"{task} now serves model {route.model_version} with template {route.template_version}"


_experiment_change("stop", "End TASK's experiment without a winner: the task serves what it served before.", _stop)
_experiment_change("rollback", "Restore what TASK served before its last change (once more undoes the rollback).",
                   _rollback)


@experiment.command("list")
@click.option("--task", type=click.Choice(list(TASKS)), help="Only this task's experiments.")
@click.pass_context
def experiment_list(context: click.Context, task: str | None) -> None:
    """Every experiment, newest first."""
    async def listed(service: DraftService) -> list[str]:
        return [f"#{found.id}\t{found.task}\t{found.state}\t{found.started_at:%Y-%m-%d %H:%M}\t"
                + " / ".join(f"{arm.label}: {arm.model_version}+{arm.template_version}" for arm in found.variants)
                for found in await service.experiments.list(task)] or ["no experiments yet"]
    _print_lines(context, listed)


def _scores(evaluation: dict[str, Any], name: str) -> str:
    scores = evaluation.get("scores", {})
    mine, against = scores.get(name, {}), scores.get(evaluation.get("against", ""), {})
    return ", ".join(f"{measure} {value:.3f} (vs {against.get(measure, float('nan')):.3f})"
                     for measure, value in mine.items())


@main.group()
def templates() -> None:
    """Versions of each task's prompt and brand voice: write a new one (previewed first), list, show."""


@templates.command("new")
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--system", "system_file", type=_Path(dir_okay=False), required=True,
              help="A file with the system prompt.")
@click.option("--template", "template_file", type=_Path(dir_okay=False), required=True,
              help="A file with the template: the request, with {field} for each of the task's fields.")
@click.option("--tone", multiple=True, help="Tone words, separated by commas (repeatable).")
@click.option("--use", multiple=True, help="Words to use where they fit, separated by commas (repeatable).")
@click.option("--avoid", multiple=True, help="Words never to use, separated by commas (repeatable).")
@click.option("--sample", "sample_file", type=_Path(dir_okay=False), help="A file with a sample of house copy.")
@click.option("--preview-only", is_flag=True, help="Show the rendered prompt and a sample draft; store nothing.")
@click.option("--user", default=getpass.getuser, show_default="your login name", help="Who writes it (for the log).")
@click.pass_context
def templates_new(context: click.Context, task: str, system_file: Path, template_file: Path, tone: tuple[str, ...],
                  use: tuple[str, ...], avoid: tuple[str, ...], sample_file: Path | None, preview_only: bool,
                  user: str) -> None:
    """Preview a new version of TASK's prompt on a sample request, then save it as the task's next version."""
    settings = _settings(context)
    with _user_errors():
        system, template = _text_file(system_file, "--system"), _text_file(template_file, "--template")
        voice = BrandVoice(tone=words("\n".join(tone), "--tone"), use=words("\n".join(use), "--use"),
                           avoid=words("\n".join(avoid), "--avoid"),
                           sample=_text_file(sample_file, "--sample").strip() if sample_file else "")
        check_text(get_task(task), PromptTemplate(f"{task}-new", task, system, template, voice))  # before the model loads

    async def write() -> None:
        click.echo("loading the model…", err=True)
        async with open_service(settings) as service:
            preview = await service.templates.preview(task, system, template, voice, by=f"cli:{user}")
            click.echo(f"system prompt:\n{preview.prompt.system}\n\nsample request:\n{preview.prompt.user}\n\n"
                       f"sample draft:\n{preview.text}\n")
            if preview_only:
                click.echo("not saved (--preview-only)")
                return
            saved = await service.templates.save(task, system, template, voice, by=f"cli:{user}")
        click.echo(f"saved as {saved.name}")

    _run(write())


@templates.command("list")
@click.option("--task", type=click.Choice(list(TASKS)), help="Only this task's versions.")
@click.pass_context
def templates_list(context: click.Context, task: str | None) -> None:
    """Every task's template versions (or one task's), the built-in first."""
    for version in _stored(context, lambda service: service.templates.list(task)):
        built_in = "\tbuilt-in" if version.name == get_task(version.task).template_version else ""
        click.echo(f"{version.name}\t{version.task}{built_in}\t{' '.join(version.template.split())}")


@templates.command("show")
@click.argument("name")
@click.pass_context
def templates_show(context: click.Context, name: str) -> None:
    """One template version, whole: system prompt, template, brand voice."""
    version = _stored(context, lambda service: service.templates.show(name))
    voice = version.brand_voice
    click.echo(f"name: {version.name}\ntask: {version.task}\nsystem prompt:\n{version.system_prompt}\n"
               f"template:\n{version.template}")
    for label, chosen in (("tone", voice.tone), ("use", voice.use), ("avoid", voice.avoid)):
        click.echo(f"{label}: {', '.join(chosen)}")
    click.echo(f"sample:\n{voice.sample}")


def _stored(context: click.Context, read: Callable[[DraftService], Awaitable[T]]) -> T:
    """What `read` finds in the database, without loading the model."""
    settings = _settings(context)

    async def reading() -> T:
        async with open_service(settings, with_model=False) as service:
            return await read(service)

    return _run(reading())


def _text_file(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint=option) from None


CONSENT_HINT = (
    "training use is opt-in: members allow it with /privacy show in Discord. If your members agreed to it another way, "
    "set [privacy] training_consent_default = true (or COPYDESK_PRIVACY__TRAINING_CONSENT_DEFAULT=true)"
)


def _consent_hint(summary: DatasetSummary) -> str | None:
    """Why drafts without consent were left out, and what to do about it, when some were."""
    if summary.exclusions is not None and summary.exclusions.counts.get(Reason.NO_CONSENT):
        return CONSENT_HINT
    return None


@main.command()
@click.argument("destination", type=_Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace DESTINATION if it already exists.")
@click.pass_context
def backup(context: click.Context, destination: Path, force: bool) -> None:
    """Copy the SQLite database to DESTINATION, consistently, even while the bot writes (PostgreSQL: use pg_dump)."""
    url = _settings(context).storage.database_url()
    with _user_errors():
        drafts = backup_database(url, destination, overwrite=force)
    click.echo(f"backed up the database ({drafts} drafts) to {destination}")


@main.command()
@click.argument("backup_file", type=_Path(dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def restore(context: click.Context, backup_file: Path, yes: bool) -> None:
    """Replace the SQLite database with BACKUP_FILE, made by `copydesk backup`; stop the bot first."""
    url = _settings(context).storage.database_url()
    if not yes:
        click.confirm(f"Replace the database at {url} with {backup_file}? Everything stored since that backup is lost",
                      abort=True)
    with _user_errors():
        drafts = restore_database(url, backup_file, holder=f"copydesk restore (pid {os.getpid()})")
    click.echo(f"restored {drafts} drafts from {backup_file}; start the bot again")
def _utc(moment: datetime | None) -> datetime | None:
    """A date given on the command line is read as UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None else None


def _no_bar(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None lets tqdm show the bar only on a terminal."""
    return None if progress is None else not progress
