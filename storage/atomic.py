"""Files and folders that appear whole or not at all, however the writing process ends.

A file is written under a temporary name beside its final one, flushed and fsynced, renamed into
place, and its folder fsynced (`replacing`). A folder is written as a temporary sibling, its
manifest last (each file with its size, sha256 and row count), then put in place in one step
(`StagedFolder`): an atomic exchange with the folder it replaces, so a reader sees the previous
complete folder or the new complete one, never a mixture. Temporary names carry the writer's
process id; whatever a dead process left behind is removed by the next writer of the same name
(`remove_leftovers`), and a writer never touches a live process's temporary files.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage.errors import StorageError

PARTIAL = ".copydesk-partial-"  # in every temporary name: `.<final name>.copydesk-partial-<pid>-<random>`
_LEFTOVER = re.compile(rf"^\.(?P<name>.+){re.escape(PARTIAL)}(?P<pid>\d+)-[0-9a-f]+$")
_HASH_CHUNK = 1 << 20


def temporary_sibling(final: Path) -> Path:
    """A fresh temporary name beside `final`, marked with this process's id."""
    return final.with_name(f".{final.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}")


def remove_leftovers(folder: Path, name: str | None = None) -> None:
    """Remove the temporary files and folders that processes no longer running left in `folder`
    (those for the final name `name`, or all)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and (name is None or match["name"] == name) and not _running(int(match["pid"])):
            _remove(entry)


def fsync_folder(folder: Path) -> None:
    """Make the renames and removals in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_folders(folder: Path) -> None:
    """`mkdir -p`, saying "Not a directory" (rather than "File exists") when a file stands in the way."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((part for part in (folder, *folder.parents) if part.exists() and not part.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker)) from None


@contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """A temporary path beside `final` for the block to write (by name: SQLite, pyarrow, zipfile all can);
    when the block ends without an error, the file is synced and renamed over `final`, else removed."""
    make_folders(final.parent)
    remove_leftovers(final.parent, final.name)
    partial = temporary_sibling(final)
    try:
        yield partial
        _fsync_file(partial)
        os.replace(partial, final)
    except BaseException:
        _remove(partial)
        raise
    fsync_folder(final.parent)


@contextmanager
def scratch_folder(parent: Path, name: str) -> Iterator[Path]:
    """A private working folder in `parent`, removed afterwards, and by the next user of `name` if this
    process dies first."""
    make_folders(parent)
    remove_leftovers(parent, name)
    folder = temporary_sibling(parent / name)
    folder.mkdir()
    try:
        yield folder
    finally:
        _remove(folder)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a folder as its manifest names it."""

    name: str
    size: int
    sha256: str
    rows: int | None = None


class Manifest(Protocol):
    """How a kind of folder lists its files: the manifest is one file in the folder, written last."""

    name: str

    def render(self, entries: Sequence[FileEntry]) -> str: ...

    def entries(self, text: str) -> list[FileEntry]: ...


class StagedFolder:
    """A folder built beside `destination` under a temporary name, then put in place whole by `commit`.

    Write the files into `path`. `commit` writes the manifest last and moves the folder into place:
    by one atomic exchange when the destination is absent, empty, or holds only what its own manifest
    lists (a previous result); into a destination that holds other things too, file by file, after
    removing the old manifest first, so that a run killed half-way leaves no manifest describing files
    that are not what it says.
    """

    def __init__(self, destination: Path) -> None:
        destination = destination.absolute()
        if destination.exists() and not destination.is_dir():
            raise StorageError(f"{destination} is a file; give a folder to write into")
        make_folders(destination.parent)
        remove_leftovers(destination.parent, destination.name)
        self.destination = destination
        self.path = temporary_sibling(destination)
        self.path.mkdir()

    def commit(self, manifest: Manifest, rows: Mapping[str, int] | None = None) -> list[FileEntry]:
        """Sync every file, write `manifest` naming them (with `rows`, by file name), and put the folder in
        place; returns the entries."""
        rows = rows or {}
        entries = [_entry(path, rows.get(path.name)) for path in sorted(self.path.iterdir()) if path.is_file()]
        (self.path / manifest.name).write_text(manifest.render(entries), encoding="utf-8")
        _fsync_file(self.path / manifest.name)
        fsync_folder(self.path)
        destination = self.destination
        if not destination.exists() or not any(destination.iterdir()):
            os.replace(self.path, destination)  # an empty folder is replaced as a whole
        elif _replaceable(destination, manifest):
            if not _exchange(self.path, destination):
                _two_renames(self.path, destination)
            _remove(self.path)  # the previous folder, now under the temporary name
        else:
            self._merge(manifest, entries)
        fsync_folder(destination.parent)
        return entries

    def discard(self) -> None:
        _remove(self.path)

    def _merge(self, manifest: Manifest, entries: Sequence[FileEntry]) -> None:
        destination = self.destination
        old = destination / manifest.name
        stale = {entry.name for entry in _listed(old, manifest)} - {entry.name for entry in entries}
        old.unlink(missing_ok=True)
        fsync_folder(destination)  # from here on, nothing claims the old files
        for name in stale:
            (destination / name).unlink(missing_ok=True)
        for entry in entries:
            os.replace(self.path / entry.name, destination / entry.name)
        fsync_folder(destination)
        os.replace(self.path / manifest.name, old)
        fsync_folder(destination)
        _remove(self.path)


def file_sha256(path: Path, *, sync: bool = False) -> str:
    """The file's sha256, read in chunks; with `sync`, the file is fsynced on the way."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
        if sync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def _entry(path: Path, rows: int | None) -> FileEntry:
    return FileEntry(path.name, path.stat().st_size, file_sha256(path, sync=True), rows)


def _listed(manifest_path: Path, manifest: Manifest) -> list[FileEntry]:
    """The files an existing manifest names: only plain names, never a path out of its folder."""
    try:
        entries = manifest.entries(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return []
    return [entry for entry in entries if entry.name not in ("", ".", "..") and Path(entry.name).name == entry.name]


def _replaceable(destination: Path, manifest: Manifest) -> bool:
    """Nothing in `destination` but what its manifest lists: a previous result, to replace as a whole."""
    present = {entry.name for entry in destination.iterdir()}
    listed = {entry.name for entry in _listed(destination / manifest.name, manifest)}
    return bool(listed) and present <= listed | {manifest.name}


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(staged: Path, destination: Path) -> bool:
    """Swap two folders in one step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(staged), _AT_FDCWD, os.fsencode(destination), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(destination))


def _two_renames(staged: Path, destination: Path) -> None:
    """Without an exchange: the previous folder steps aside (a leftover if we die now), the new one steps in."""
    aside = temporary_sibling(destination)
    os.rename(destination, aside)
    os.rename(staged, destination)
    os.rename(aside, staged)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another writer in this process, e.g. a concurrent export
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
