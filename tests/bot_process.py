"""`copydesk run` as a process of its own, pointed at a fake Discord started by the test.

Run as a script, it points discord.py at the fake (the same two settings FakeDiscord.point_discord_here
changes in-process) and hands over to the real command line:
    python tests/bot_process.py REST_BASE GATEWAY_URL run
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


class BotProcess:
    """Start, kill and stop the bot; its output goes to `<folder>/<name>-<n>.log`, one log per start."""

    def __init__(self, fake: object, folder: Path, env: dict[str, str], name: str = "bot") -> None:
        self.fake = fake
        self.folder = folder
        self.env = env
        self.name = name
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    def environ(self) -> dict[str, str]:
        environ = {key: value for key, value in os.environ.items() if not key.startswith("COPYDESK_")}
        return environ | {"PYTHONPATH": str(REPOSITORY), "COPYDESK_DISCORD_TOKEN": self.fake.token} | self.env  # type: ignore[attr-defined]

    async def start(self) -> asyncio.subprocess.Process:
        self.starts += 1
        environ = self.environ()
        with self.log.open("wb") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), self.fake.rest_base, self.fake.gateway_url,  # type: ignore[attr-defined]
                "run", cwd=self.folder, env=environ, stdout=output, stderr=asyncio.subprocess.STDOUT,
            )
        return self.process

    async def signal(self, number: signal.Signals) -> int:
        """Send `number`, and wait for the process to end; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(number)
        return await asyncio.wait_for(self.process.wait(), timeout=120)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def command(self, *arguments: str) -> tuple[int, str]:
        """Another `copydesk` command on the same configuration (e.g. backup): exit code and output."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from bot.cli import main; main(prog_name='copydesk')", *arguments, cwd=self.folder,
            env=self.environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode or 0, output.decode(errors="replace")


if __name__ == "__main__":
    import discord
    import yarl

    from bot.cli import main

    rest_base, gateway_url, *arguments = sys.argv[1:]
    discord.http.Route.BASE = rest_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    main(arguments, prog_name="copydesk")
