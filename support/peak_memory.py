"""A process's resident memory, its peak and its current size, read from the kernel: the same measure
for a server we started and for a bench run in a process of its own, whatever language either is in."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mb(pid: int | str = "self") -> float:
    """The high-water mark of resident memory (VmHWM) of a running process, in MiB.

    Read it before the process exits: the kernel forgets it then.
    """
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory now (VmRSS), in MiB: what stays after loading's buffers are given back."""
    return _status_mb(pid, "VmRSS")


def _status_mb(pid: int | str, field: str) -> float:
    status = Path(f"/proc/{pid}/status")
    try:
        lines = status.read_text().splitlines()
    except OSError as error:
        raise ProcessLookupError(f"cannot read the memory of process {pid}: {error}") from None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            kib, unit = value.split()
            if unit != "kB":
                raise ValueError(f"unexpected unit {unit!r} for {field} in {status}")
            return int(kib) / 1024
    raise ValueError(f"{status} has no {field} line (a kernel thread, or not Linux?)")
