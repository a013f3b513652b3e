"""The engine bench's memory columns: a process's peak and current resident memory as the kernel keeps them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.peak_memory import peak_rss_mb, rss_mb

# Write 200 MiB (so it is resident), free it, then wait: the peak stays, the current size falls.
PEAK_THEN_FREE = (
    "import sys\n"
    "block = b'x' * (200 * 1024 * 1024)\n"
    "del block\n"
    "print('freed', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_the_peak_of_another_process_outlives_the_memory_it_freed() -> None:
    child = subprocess.Popen([sys.executable, "-c", PEAK_THEN_FREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "freed\n"
        peak = peak_rss_mb(child.pid)
        current = rss_mb(child.pid)
    finally:
        child.communicate("")
    assert peak >= 200
    assert current < peak - 150


def test_a_process_that_is_gone_says_so() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError, match=f"process {child.pid}"):
        peak_rss_mb(child.pid)
