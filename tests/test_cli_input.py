"""Whatever a user types, the command line answers with a line, never a traceback.

Hypothesis makes option values for every subcommand (dates, paths of every awkward kind,
numbers, repeated flags) and runs `copydesk` in-process through click's CliRunner against a
SQLite file with a few drafts. An exit code is 0, 1 (the user can fix something) or 2 (usage).

No model is ever loaded: `draft` only gets inputs its task refuses, `console` only a config or
a database that stops it first, `run` and `sync` no Discord token (with one, they would connect
to Discord).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import DATE_FORMATS, main
from generation import TASKS, Task
from storage import EXPORT_FORMATS, Repository, open_database
from storage.database import sqlite_lock

# Every kind of path a user may name, made fresh for each example (see Place.path).
PATH_KINDS = ("new in an existing folder", "existing file", "existing folder", "missing parent", "unwritable",
              "file as folder", "/dev/full", "relative", "empty")
JUNK_NUMBERS = st.one_of(st.integers(-(10**30), 10**30).map(str), st.floats().map(repr),
                         st.sampled_from(["", "nan", "inf", "-inf", "1e400", "x", "0x10", " 3 ", "１"]))
# Configs that stop every subcommand before it loads a model.
BROKEN_CONFIGS = {"data-in-a-file": '[storage]\ndata_dir = "{root}/a-file.txt"\n',
                  "data-unwritable": '[storage]\ndata_dir = "/sys/copydesk-data"\n',
                  "bad-value": "[engine]\nmax_concurrent = 0\n"}
NO_DISCORD = {"COPYDESK_DISCORD_TOKEN": None, "COPYDESK_CONFIG": None}


@dataclass
class Place:
    """A folder with a database of a few drafts, its config file, and awkward paths around it."""

    root: Path
    config: Path
    database: Path
    counter: Iterator[int] = itertools.count()

    def path(self, kind: str) -> str:
        fresh = f"case-{next(self.counter)}"
        return {
            "new in an existing folder": str(self.root / "out" / fresh),
            "existing file": str(self.root / "a-file.txt"),
            "existing folder": str(self.root / "a-folder"),
            "missing parent": str(self.root / "missing" / fresh / "deeper"),
            "unwritable": f"/sys/copydesk-{fresh}/x",  # EPERM, even for root
            "file as folder": str(self.root / "a-file.txt" / fresh),
            "/dev/full": "/dev/full",  # ENOSPC on write
            "relative": fresh,
            "empty": "",
        }[kind]


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    root = tmp_path_factory.mktemp("cli-input")
    (root / "a-folder").mkdir()
    (root / "out").mkdir()
    (root / "a-file.txt").write_text("not a database, not TOML: [[[\n")
    config = root / "copydesk.toml"
    config.write_text(f'[storage]\ndata_dir = "{root / "data"}"\n')
    for name, text in BROKEN_CONFIGS.items():
        (root / f"{name}.toml").write_text(text.format(root=root))
    database = root / "data" / "copydesk.sqlite3"
    database.parent.mkdir()
    asyncio.run(seed(f"sqlite+aiosqlite:///{database}"))
    return Place(root, config, database)


async def seed(url: str) -> None:
    database = await open_database(url)
    try:
        repository = Repository(database)
        for number, author in enumerate(("alice", "bob", "alice")):
            draft = await repository.create_draft(
                task="ad", inputs={"product": f"boots {number}", "audience": "hikers"}, system_prompt="Write ads.",
                user_prompt=f"An ad for boots {number}.", template_version="ad-v1", model="SmolLM2-135M-Instruct",
                quantization="nf4", sampling={"temperature": 0.7, "max_new_tokens": 24}, seed=0, author_id=author,
                guild_id="42", channel_id="7", parent_id=None)
            await repository.finish_draft(draft.id, output=f"Boots {number}!", prompt_tokens=5, completion_tokens=3,
                                          latency_ms=1, ttft_ms=1)
            await repository.rate(draft.id, "carol", 1 if number else -1)
    finally:
        await database.close()


def dates() -> st.SearchStrategy[str]:
    well_formed = st.tuples(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
                            st.sampled_from(DATE_FORMATS)).map(lambda pair: pair[0].strftime(pair[1]))
    malformed = st.sampled_from(["2026-13-01", "2026-02-30", "yesterday", "", "2026/01/01", "01-01-2026",
                                 "2026-01-01T25:00", "0000-01-01", "2026-01-01 10:00", "+2026-01-01"])
    return mostly(well_formed, st.one_of(malformed, st.text(max_size=12)))


def mostly(valid: st.SearchStrategy[str], junk: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values seven times in eight, so that most runs get past the option parser to the work itself."""
    return st.sampled_from([valid] * 7 + [junk]).flatmap(lambda chosen: chosen)


def repeated(flag: str, values: st.SearchStrategy[str], most: int = 3) -> st.SearchStrategy[list[str]]:
    """The flag given 0 to `most` times."""
    return st.lists(values, max_size=most).map(lambda chosen: [part for value in chosen for part in (flag, value)])


def export_args(draw: st.DrawFn, place: Place) -> list[str]:
    paths = st.sampled_from(PATH_KINDS).map(place.path)
    parts: list[list[str]] = [
        draw(repeated("--out", paths, most=2)), draw(repeated("--since", dates(), most=2)),
        draw(repeated("--until", dates(), most=2)),
        draw(repeated("--format", mostly(st.sampled_from(EXPORT_FORMATS), st.sampled_from(["csv", ""])))),
        draw(repeated("--task", mostly(st.sampled_from(list(TASKS)), st.just("poem")))),
        draw(repeated("--min-votes", mostly(st.integers(0, 5).map(str), JUNK_NUMBERS), most=2)),
        draw(repeated("--min-rating", mostly(st.floats(-1, 1).map(repr), JUNK_NUMBERS), most=2)),
        draw(repeated("--test-fraction", mostly(st.floats(0, 1, exclude_max=True).map(repr), JUNK_NUMBERS), most=2)),
        draw(repeated("--model", st.text(max_size=8))),
        draw(repeated("--template-version", st.sampled_from(["ad-v1", "v9", ""]))),
        draw(repeated("--guild", st.sampled_from(["42", "nope", ""]), most=2)),
        draw(st.sampled_from([[], ["--progress"], ["--no-progress"]])),
    ]
    return ["export", *(part for group in parts for part in group)]


def refused_draft_args(draw: st.DrawFn, task: Task) -> list[str]:
    """Values for every field of the task, with one of them refused (missing, too long, or not a choice)."""
    values = {field.name: draw(st.text(min_size=1, max_size=20).filter(str.strip)) for field in task.fields}
    for field in task.fields:
        if field.choices:
            values[field.name] = draw(st.sampled_from(field.choices))
    spoiled = draw(st.sampled_from(task.fields))
    ways = ["too long"] + (["missing"] if spoiled.required else []) + (["not a choice"] if spoiled.choices else [])
    way = draw(st.sampled_from(ways))
    if way == "missing":
        del values[spoiled.name]
    elif way == "too long":
        values[spoiled.name] = "x" * (spoiled.max_chars + 1)
    else:
        values[spoiled.name] = "definitely-not-a-choice"
    return ["draft", task.name, *(part for name, value in values.items() for part in (f"--{name}", value))]


@st.composite
def command_lines(draw: st.DrawFn, place: Place, subcommand: str) -> tuple[list[str], bool]:
    """A command line for `subcommand`, and whether another process holds the database meanwhile."""
    configs = {"good": str(place.config), **{name: str(place.root / f"{name}.toml") for name in BROKEN_CONFIGS},
               **{kind: place.path(kind) for kind in PATH_KINDS}}
    config = draw(st.sampled_from(sorted(configs)))
    # No --config reads ./config.toml if present: there is none where the test runs (place.root), so
    # the defaults apply, whose data folder is place.root/data, the same database.
    prefix = draw(st.sampled_from([["--config", configs[config]], [], ["--config", str(place.config)] * 2]))
    stopped_by_config = config != "good" and prefix == ["--config", configs[config]]
    held = draw(st.booleans())
    paths = st.sampled_from(PATH_KINDS).map(place.path)
    if subcommand == "export":
        args = export_args(draw, place)
    elif subcommand == "backup":
        args = ["backup", draw(paths), *draw(st.sampled_from([[], ["--force"]]))]
    elif subcommand == "restore":
        args = ["restore", draw(paths), *draw(st.sampled_from([[], ["--yes"]]))]
    elif subcommand == "draft":
        args = refused_draft_args(draw, draw(st.sampled_from(list(TASKS.values()))))
    elif subcommand == "console":
        # Loads the model unless the config or the database stops it first.
        held = held or not stopped_by_config
        args = ["console", *draw(repeated("--user", st.text(max_size=8), most=2))]
    elif subcommand == "sync":
        args = ["sync", *draw(repeated("--guild", mostly(st.integers(0, 2**64).map(str), JUNK_NUMBERS), most=2))]
    else:
        args = [subcommand]
    return [*prefix, *args], held


def invoke(place: Place, args: list[str], held: bool) -> Result:
    holding = sqlite_lock(place.database, "another copydesk process (the test)") if held else contextlib.nullcontext()
    with holding, contextlib.chdir(place.root):
        return CliRunner().invoke(main, args, env=NO_DISCORD, input="")


def assert_answered_in_a_line(result: Result, args: list[str]) -> None:
    shown = f"copydesk {' '.join(args)!r} → exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\nraised {result.exception!r}")
    assert result.exit_code in (0, 1, 2), shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    if result.exit_code:
        assert "Error: " in result.stderr or "Aborted!" in result.stderr, shown


@pytest.mark.parametrize("subcommand", ["export", "backup", "restore", "status", "draft", "console", "run", "sync"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_no_option_value_brings_a_traceback(place: Place, subcommand: str, data: st.DataObject) -> None:
    args, held = data.draw(command_lines(place, subcommand))
    assert_answered_in_a_line(invoke(place, args, held), args)


def test_an_inverted_date_range_is_refused_as_usage(place: Place) -> None:
    result = invoke(place, ["--config", str(place.config), "export", "--out", place.path("new in an existing folder"),
                            "--since", "2026-05-01", "--until", "2026-04-01"], held=False)
    assert result.exit_code == 2, result.output
    assert "--since (2026-05-01 00:00) is not before --until (2026-04-01 00:00)" in result.stderr


@pytest.mark.parametrize(("kind", "reason"), [("unwritable", "Operation not permitted"),
                                              ("file as folder", "Not a directory"),
                                              ("existing file", "is a file")])
def test_an_export_to_where_it_cannot_write_says_so_in_a_line(place: Place, kind: str, reason: str) -> None:
    out = place.path(kind)
    result = invoke(place, ["--config", str(place.config), "export", "--out", out], held=False)
    assert result.exit_code in (1, 2) and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.stderr.count("\n") == 1 or result.exit_code == 2, result.stderr
    assert out in result.stderr and reason in result.stderr, result.stderr


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a tiny filesystem with no space left (a tmpfs: mounting one needs root)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("a full filesystem needs a tmpfs, which only root can mount")
    try:
        with (folder / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 4096)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_full_disk_is_one_line(place: Place, full_disk: Path) -> None:
    out = full_disk / "dataset"
    result = invoke(place, ["--config", str(place.config), "export", "--out", str(out), "--no-progress"], held=False)
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr, result.stderr
