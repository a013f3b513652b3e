"""Telling a full disk from other write failures, whichever library was writing.

Only Python's own file writes raise OSError(ENOSPC): safetensors raises a SafetensorError that
says "No space left on device (os error 28)", and torch.save a RuntimeError about an unexpected
position. So besides the error itself, the disk is asked how much room is left.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from generation.training.config import TrainingError

NEARLY_FULL_BYTES = 1 << 20  # a write failed and less than this is left: the disk filled up


def filled_the_disk(error: BaseException, folder: Path) -> bool:
    """`error`, raised while writing into `folder`, came from its disk filling up."""
    cause: BaseException | None = error
    while cause is not None:
        if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or "No space left on device" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    return existing is not None and shutil.disk_usage(existing).free < NEARLY_FULL_BYTES


def disk_full(folder: Path, kept: str) -> TrainingError:
    """The message for a full disk: nothing is registered, `kept` says what is there to resume from."""
    return TrainingError(f"the disk holding {folder} is full; nothing was registered. Free some space and run the "
                         f"same command with --resume ({kept})")
