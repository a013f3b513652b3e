"""`copydesk` run as a process of its own, and watching what it writes, for tests that kill it mid-way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def copydesk(folder: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """The command line as a process of its own, as a user starts it in `folder` (its database in ./data).

    Its output goes to a file, so that a full pipe never holds it back while the test watches the folder."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("COPYDESK_")}
    with (folder / "output.log").open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-c", "from bot.cli import main; main(prog_name='copydesk')", *arguments], cwd=folder,
            env=environ | {"PYTHONPATH": str(REPOSITORY)}, stdout=output, stderr=subprocess.STDOUT)


def watch_until(process: subprocess.Popen[bytes], appeared: Callable[[], bool]) -> float | None:
    """Seconds until `appeared()` holds while the process runs (checked every 2 ms); None if it ended first."""
    started = time.monotonic()
    while process.poll() is None:
        if appeared():
            return time.monotonic() - started
        time.sleep(0.002)
    return None
