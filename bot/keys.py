"""The member key: it keys pseudonyms in exports and the erasure ledger, and never leaves this machine."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_VARIABLE = "COPYDESK_EXPORT_KEY"
KEY_FILE = "secret.key"


def member_key(data_dir: Path) -> bytes:
    """$COPYDESK_EXPORT_KEY if set; else a random key made once in the data folder (mode 0600).

    The key must stay the same for pseudonyms to stay stable across exports.
    """
    if value := os.environ.get(KEY_VARIABLE, "").strip():
        return value.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip().encode()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
