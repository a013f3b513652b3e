"""OpenAI-compatible servers as child processes on loopback: `transformers serve`, the real one that the
engine bench measures and the OpenAI engine's tests talk to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120


class ServerDidNotStart(RuntimeError):
    """The server exited or never answered; the message ends with its log."""


@dataclass(frozen=True)
class ServeOptions:
    """The batching manager's defaults claim most of the RAM; these size it for the embedded model."""

    num_blocks: int = 16
    block_size: int = 256
    max_batch_tokens: int = 256
    quantization: str | None = "bnb-4bit"  # as copydesk deploys: full precision was 3-10x slower per batched request here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def transformers_serve(model: str, log: Path, options: ServeOptions = ServeOptions()) -> Iterator[str]:
    """Start `transformers serve` with continuous batching on the CPU for `model` (a local folder);
    yields its base URL once it answers, and stops it on the way out."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with child_server(transformers_serve_command(model, port, options), f"{base_url}/models", log,
                      "transformers serve", extra_env=OFFLINE):
        yield base_url


OFFLINE = {"HF_HUB_OFFLINE": "1"}  # what transformers serve is started with: nothing may download weights


def transformers_serve_command(model: str, port: int, options: ServeOptions) -> list[str]:
    """The command line of `transformers serve` on loopback, with continuous batching on the CPU."""
    return [
        sys.executable, "-m", "transformers.cli.transformers", "serve", model,
        "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--continuous-batching",
        "--cb-num-blocks", str(options.num_blocks), "--cb-block-size", str(options.block_size),
        "--cb-max-batch-tokens", str(options.max_batch_tokens),
        *(("--quantization", options.quantization) if options.quantization else ()),
    ]


@contextmanager
def child_server(
    command: list[str], ready_url: str, log: Path, name: str, extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Any server as a child process, its output in `log`; yields it once `ready_url` answers, stops it on the way out."""
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(extra_env or {})})
    try:
        _wait_until_answering(server, ready_url, log, name)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_answering(server: subprocess.Popen[bytes], url: str, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise ServerDidNotStart(
                    f"{name} did not come up:\n{log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.5)
