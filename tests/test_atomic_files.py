"""Every file copydesk writes appears whole or not at all: `copydesk export` and `copydesk backup`, run as
processes of their own and killed (SIGKILL) at seeded random points, never leave a file that is not
what the folder's manifest (the dataset card) says, and never spoil the previous complete result.

The checks read the files independently of the code under test: JSON Lines lines, Parquet row counts,
sha256 of the bytes, SQLite's own integrity check.
"""

from __future__ import annotations

import hashlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bot.config import PrivacySettings
from bot.service import DraftService, Policy
from storage import Repository, atomic
from storage.atomic import PARTIAL, FileEntry, StagedFolder, remove_leftovers, replacing, temporary_sibling
from support.seeded_drafts import seed
from tests.copydesk_process import copydesk, watch_until

DRAFTS = 1000  # an export of a few seconds, most of it writing
KILLS = {"export": 3, "backup": 2}
FILE_ROW = re.compile(r"^\| `(?P<format>\w+)` \| .* \| (?P<train>\d+) \| (?P<test>\d+) \|$", re.MULTILINE)
CHECKSUM_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<rows>\d+|—) \| (?P<size>\d+) \| (?P<sha256>[0-9a-f]{64}) \|$",
                          re.MULTILINE)


def watch_for_writing(folder: Path, process: subprocess.Popen[bytes]) -> float | None:
    """Seconds until the process's own first temporary file appears in `folder` or a folder in it (a killed
    run's are named for its pid); None if it ended first."""
    own = f"{PARTIAL}{process.pid}-"
    return watch_until(process, lambda: any(own in path.name for path in folder.glob("**/.*")))


def run_to_the_end(folder: Path, *arguments: str) -> tuple[float, float]:
    """Run a command to its end: seconds until it began writing files, and in all."""
    started = time.monotonic()
    process = copydesk(folder, *arguments)
    writing = watch_for_writing(folder, process)
    process.wait(timeout=120)
    assert process.returncode == 0, (folder / "output.log").read_text()
    assert writing is not None, "the command wrote through temporary files"
    return writing, time.monotonic() - started


def kill_while_writing(folder: Path, after_s: float, *arguments: str) -> bool:
    """SIGKILL the command `after_s` seconds after its first temporary file appeared; True if it was
    killed (not already done by then)."""
    process = copydesk(folder, *arguments)
    if watch_for_writing(folder, process) is not None:
        try:
            process.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)
    return process.returncode == -signal.SIGKILL


def rows_in(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return len(path.read_bytes().splitlines())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def complete_export(folder: Path) -> dict[str, str]:
    """Assert that `folder` holds a whole export, as its card says; returns each file's sha256."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    for match in FILE_ROW.finditer(card):
        for split in ("train", "test"):
            name = f"{match['format']}-{split}.jsonl"
            assert rows_in(folder / name) == int(match[split]), f"the card's rows for {name}"
    listed = {match["name"]: match for match in CHECKSUM_ROW.finditer(card)}
    assert listed, "the card lists every file with its checksum"
    assert {path.name for path in folder.iterdir()} == set(listed) | {"README.md"}, "nothing the card does not list"
    for name, entry in listed.items():
        path = folder / name
        assert path.stat().st_size == int(entry["size"]) and sha256(path) == entry["sha256"], name
        assert rows_in(path) == int(entry["rows"]), name
    return {name: entry["sha256"] for name, entry in listed.items()}


def complete_backup(path: Path) -> None:
    with sqlite3.connect(path.as_uri() + "?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM drafts").fetchone() == (DRAFTS,)


def leftovers(*folders: Path) -> list[str]:
    return [path.name for folder in folders for path in folder.iterdir() if PARTIAL in path.name]


def test_killed_exports_and_backups_leave_the_previous_result_or_a_whole_new_one(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    seed(tmp_path / "data" / "copydesk.sqlite3", DRAFTS)
    rng = random.Random(20261201)
    export, backup = ("export", "--out", "dataset", "--progress"), ("backup", "backups/copydesk.sqlite3", "--force")

    writing_s, export_s = run_to_the_end(tmp_path, *export)  # kills before any file is written change nothing
    previous = complete_export(tmp_path / "dataset")
    assert sum(rows_in(tmp_path / "dataset" / f"raw-{split}.jsonl") for split in ("train", "test")) > DRAFTS / 2
    killed = 0
    for _ in range(KILLS["export"]):
        killed += kill_while_writing(tmp_path, rng.uniform(0, 0.8) * (export_s - writing_s), *export)
        assert complete_export(tmp_path / "dataset") == previous, "the same drafts: the same files, whole"
    assert killed, "at least one kill came while the export was writing its files"

    writing_s, backup_s = run_to_the_end(tmp_path, *backup)
    complete_backup(tmp_path / "backups" / "copydesk.sqlite3")
    killed = 0
    for _ in range(KILLS["backup"]):
        killed += kill_while_writing(tmp_path, rng.uniform(0, 0.8) * (backup_s - writing_s), *backup)
        complete_backup(tmp_path / "backups" / "copydesk.sqlite3")
        assert [path.name for path in (tmp_path / "backups").iterdir() if PARTIAL not in path.name] == [
            "copydesk.sqlite3"]
    assert killed, "at least one kill came while the backup was writing"

    run_to_the_end(tmp_path, *export)
    assert leftovers(tmp_path) == [], "the next run removes what a killed one left (a backup's: see below)"
    assert complete_export(tmp_path / "dataset") == previous


def test_a_killed_writers_temporary_files_go_and_a_live_ones_stay(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.jsonl{PARTIAL}{int(dead.stdout)}-0123abcd"
    stale.write_text("half a fi")
    (tmp_path / f".out{PARTIAL}{int(dead.stdout)}-4567cdef").mkdir()
    ours = temporary_sibling(tmp_path / "out.jsonl")
    ours.write_text("being written by this process")
    remove_leftovers(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [ours.name]

    with pytest.raises(RuntimeError), replacing(tmp_path / "out.jsonl") as partial:
        partial.write_text("never finished")
        raise RuntimeError("the writer failed")
    assert sorted(path.name for path in tmp_path.iterdir()) == [ours.name], "a failed write leaves nothing"
    with replacing(tmp_path / "out.jsonl") as partial:
        partial.write_text("whole\n")
    assert (tmp_path / "out.jsonl").read_text() == "whole\n"


async def test_an_export_into_a_folder_with_other_files_keeps_them_and_replaces_its_own(
    repository: Repository, tmp_path: Path
) -> None:
    """A folder that is not only an export (e.g. `--out .`) is written file by file, the old card removed first."""
    draft = await repository.create_draft(
        task="ad", inputs={"product": "lamp"}, system_prompt="You write ads.", user_prompt="Write an ad for a lamp.",
        template_version="ad-v1", model="m", quantization="nf4", sampling={}, seed=0, author_id="alice")
    await repository.finish_draft(draft.id, output="A lamp.", prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                  ttft_ms=1)
    exporter = DraftService(repository, None, Policy(member_key=b"key", privacy=PrivacySettings(training_consent_default=True)))
    here = tmp_path / "here"
    here.mkdir()
    (here / "config.toml").write_text("[storage]\n")
    await exporter.export(here, formats=("sft", "raw"))
    await exporter.export(here, formats=("sft",))
    assert sorted(path.name for path in here.iterdir()) == [
        "README.md", "config.toml", "sft-test.jsonl", "sft-train.jsonl"], "the first export's raw files went with it"
    card = (here / "README.md").read_text()
    assert "| `sft-train.jsonl` |" in card and "raw-train" not in card and not leftovers(tmp_path)


class Listing:
    """A manifest of the simplest kind: one line per file."""

    name = "MANIFEST"

    def render(self, entries: Sequence[FileEntry]) -> str:
        return "".join(f"{entry.name} {entry.size} {entry.sha256}\n" for entry in entries)

    def entries(self, text: str) -> list[FileEntry]:
        return [FileEntry(name, int(size), digest) for name, size, digest in map(str.split, text.splitlines())]


def write_folder(destination: Path, files: dict[str, str]) -> None:
    staged = StagedFolder(destination)
    for name, text in files.items():
        (staged.path / name).write_text(text)
    staged.commit(Listing())


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic exchange", "two renames"])
def test_a_folder_replaces_the_previous_one_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  exchange: bool) -> None:
    (tmp_path / "keep.txt").write_text("not ours")
    write_folder(tmp_path / "out", {"a.txt": "first\n"})
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda staged, destination: False)
    (tmp_path / "out" / "MANIFEST").write_text((tmp_path / "out" / "MANIFEST").read_text() + f"../keep.txt 8 {'0' * 64}\n")
    write_folder(tmp_path / "out", {"b.txt": "second\n"})
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["MANIFEST", "b.txt"]
    assert (tmp_path / "out" / "MANIFEST").read_text() == f"b.txt 7 {sha256(tmp_path / 'out' / 'b.txt')}\n"
    assert (tmp_path / "out" / "b.txt").read_text() == "second\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.txt", "out"], "nothing left beside it"
