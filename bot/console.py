"""The terminal front-end: the same commands as in Discord, typed at a prompt.

The drafting commands are the task catalogue's (`/draft ad product:"…" audience:"…"`, …), the
rest are the feedback and privacy commands of `FEEDBACK_HELP`; `/help` lists both.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import TextIO

from bot.errors import MEMBER_ERRORS
from bot.service import DraftProgress, DraftService, Member
from generation import TASKS, InputError, Task
from generation.language import AUTO
from generation.quality import quality_line
from storage import Draft, DraftStatus

ReadLine = Callable[[str], Awaitable[str | None]]
FEEDBACK_HELP = """\
/rate up|down [#id]   /regenerate [#id]   /improve [#id] [text:"…"]   /flag [#id] reason:"…"
/list [n]   /show [#id]   /privacy [show|allow|deny|delete]   /help   /quit
A draft command with variants:2…4 writes that many side by side; /pick #id chooses the one you prefer.

A command without #id acts on the last draft shown. Ctrl-C while a draft streams cancels it."""
PREVIEW_CHARS = 60


class Console:
    def __init__(self, service: DraftService, member: Member, out: TextIO, read_line: ReadLine) -> None:
        self._service = service
        self._member = member
        self._out = out
        self._read_line = read_line
        self._last_draft: int | None = None

    async def run(self) -> None:
        info = self._service.engine.info
        self._say(f"copydesk — {info.name} ({info.quantization}, {info.device}). Type /help for commands.")
        while (line := await self._read_line("copydesk> ")) is not None:
            if not await self.handle(line):
                return

    async def handle(self, line: str) -> bool:
        """Run one command line; False means the user asked to quit."""
        try:
            words = shlex.split(line)
        except ValueError as error:
            self._say(f"error: {error} (check your quotes)")
            return True
        if not words:
            return True
        try:
            return await self._dispatch(words)
        except MEMBER_ERRORS as error:
            self._say(f"error: {error}")
            return True

    async def _dispatch(self, words: list[str]) -> bool:
        task = _match_task(words)
        if task is not None:
            values = _fields(words[len(task.command.split()):])
            count = _count(values.pop("variants", "1"))
            fields, options = task.split(values)
            language = options.get("language", AUTO)
            if count == 1:
                await self._stream(await self._service.create_draft(self._member, task.name, fields, language=language))
            else:
                await self._stream_variants(await self._service.create_variants(self._member, task.name, fields, count,
                                                                                language=language))
            return True
        command, args = words[0], words[1:]
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self._say(help_text(TASKS.values()))
        elif command == "/list":
            self._list(await self._service.recent(int(args[0]) if args and args[0].isdigit() else 10))
        elif command == "/show":
            self._show(await self._service.get(self._target(args)))
        elif command == "/rate":
            await self._rate(args)
        elif command == "/pick":
            place, count = await self._service.pick(self._member, self._target(args))
            self._say(f"picked variant {place} of {count} — the others stay as alternatives")
        elif command == "/regenerate":
            await self._stream(await self._service.regenerate(self._member, self._target(args)))
        elif command == "/improve":
            text = _fields(_named(args)).get("text") or await self._ask("improved version> ")
            await self._service.improve(self._member, self._target(args), text)
            self._say("saved your improved version — thank you, it is the best training data there is.")
        elif command == "/privacy":
            await self._privacy(args[0] if args else "show")
        elif command == "/flag":
            reason = _fields(_named(args)).get("reason") or await self._ask("reason> ")
            await self._service.flag(self._member, self._target(args), reason)
            self._say("flagged for review.")
        else:
            self._say(f"error: unknown command {command!r}; type /help")
        return True

    async def _rate(self, args: list[str]) -> None:
        choice = next((arg for arg in args if arg in ("up", "down")), None)
        if choice is None:
            raise InputError("say /rate up or /rate down")
        ups, downs = await self._service.rate(self._member, self._target(args), choice == "up")
        self._say(f"rated {choice} — now 👍 {ups} · 👎 {downs}")

    async def _privacy(self, action: str) -> None:
        """What is stored about the member (here the operator), consent to training use, erasure."""
        privacy = self._service.privacy
        if action == "show":
            summary = await privacy.summary(self._member)
            counts = ", ".join(f"{count} {kind}" for kind, count in summary.stored.items())
            use = "may" if summary.training_use else "may not"
            source = "your choice" if summary.chosen else "the configured default, privacy.training_consent_default"
            self._say(f"stored about you: {counts}\nyour drafts {use} be used as training data ({source}) — "
                      "/privacy allow · /privacy deny · /privacy delete")
        elif action in ("allow", "deny"):
            await privacy.set_training_use(self._member, action == "allow")
            self._say("your drafts may now be used as training data." if action == "allow"
                      else "your drafts will not be used as training data.")
        elif action == "delete":
            answer = await self._ask("this erases every prompt, draft, rating, improvement and flag of yours, now and "
                                     "from every later export; it cannot be undone. Type yes to erase> ")
            if answer.strip().casefold() != "yes":
                self._say("nothing was erased.")
                return
            removed = await privacy.erase(self._member)
            self._say("erased " + ", ".join(f"{count} {kind}" for kind, count in removed.items()) + ".")
        else:
            raise InputError("say /privacy show, /privacy allow, /privacy deny or /privacy delete")

    async def _stream(self, draft: Draft) -> None:
        self._last_draft = draft.id
        self._say(f"── draft #{draft.id} · {draft.task} · {draft.model} ({draft.quantization}) ──")
        printed = ""
        ahead: int | None = None
        progress: DraftProgress | None = None
        loop = asyncio.get_running_loop()
        cancel_on_ctrl_c = _install_sigint(loop, lambda: self._service.cancel(draft.id))
        try:
            async for progress in self._service.generate(draft.id):
                if progress.status == DraftStatus.QUEUED:
                    if progress.ahead != ahead:
                        ahead = progress.ahead
                        self._say(f"⏳ waiting for the model — {ahead} draft(s) ahead of yours")
                    continue
                if progress.held:
                    continue
                stable = progress.text.rstrip("\ufffd")  # hold back a half-decoded character
                if stable.startswith(printed):
                    self._out.write(stable[len(printed):])
                    self._out.flush()
                    printed = stable
        finally:
            if cancel_on_ctrl_c:
                loop.remove_signal_handler(signal.SIGINT)
        self._say("")
        if progress is None:
            return
        if progress.held:
            self._say(f"── draft #{draft.id} is held for a moderator's review; its text is not shown ──")
        elif progress.status == DraftStatus.DONE:
            self._say(f"── done · {progress.completion_tokens} tokens · "
                      "/rate up|down · /regenerate · /improve · /flag ──")
            if progress.quality:
                self._say(f"   {quality_line(progress.quality)}")
        elif progress.status == DraftStatus.CANCELLED:
            self._say(f"── draft #{draft.id} cancelled ──")
        else:
            self._say(f"── draft #{draft.id} failed: {progress.error} ──")

    async def _stream_variants(self, drafts: list[Draft]) -> None:
        """Write the variants together, then print them one after the other (streams cannot share a terminal)."""
        self._last_draft = drafts[0].id
        self._say(f"── {len(drafts)} variants · drafts #{drafts[0].id}–#{drafts[-1].id} · {drafts[0].task} · "
                  "writing them together ──")
        snapshot: tuple[DraftProgress, ...] = ()
        loop = asyncio.get_running_loop()
        cancel_on_ctrl_c = _install_sigint(loop, lambda: [self._service.cancel(draft.id) for draft in drafts])
        try:
            async for snapshot in self._service.generate_together([draft.id for draft in drafts]):
                pass
        finally:
            if cancel_on_ctrl_c:
                loop.remove_signal_handler(signal.SIGINT)
        self._say("\n".join(variant_lines(drafts, snapshot)))
        self._say("── /pick #id chooses one · /rate, /improve, /flag take #id too ──")

    def _list(self, drafts: list[Draft]) -> None:
        if not drafts:
            self._say("no drafts yet — try /draft ad product:\"…\" audience:\"…\"")
        for draft in drafts:
            preview = " ".join(draft.output.split())[:PREVIEW_CHARS]
            self._say(f"#{draft.id:<5} {draft.status:<9} {draft.task:<8} "
                      f"{draft.created_at:%Y-%m-%d %H:%M}  {preview}")

    def _show(self, draft: Draft) -> None:
        ups = sum(1 for rating in draft.ratings if rating.value > 0)
        inputs = ", ".join(f"{key}: {value}" for key, value in draft.inputs.items())
        self._say(f"#{draft.id} · {draft.task} · {draft.status} · {inputs}")
        self._say(draft.output or "(no text)")
        self._say(f"👍 {ups} · 👎 {len(draft.ratings) - ups} · {len(draft.improvements)} improved · "
                  f"{len(draft.flags)} flags")

    def _target(self, args: list[str]) -> int:
        ref = next((arg for arg in args if arg.lstrip("#").isdigit()), None)
        if ref is not None:
            return int(ref.lstrip("#"))
        if self._last_draft is None:
            raise InputError("no draft yet; name one with #id (see /list)")
        return self._last_draft

    async def _ask(self, prompt: str) -> str:
        return await self._read_line(prompt) or ""

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _match_task(words: list[str]) -> Task | None:
    return next((task for task in TASKS.values()
                 if words[:len(task.command.split())] == task.command.split()), None)


def _named(args: list[str]) -> list[str]:
    return [arg for arg in args if ":" in arg]


def _fields(words: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in words:
        name, colon, value = word.partition(":")
        if not colon:
            raise InputError(f"expected name:\"value\", got {word!r}")
        fields[name] = value
    return fields


def _count(value: str) -> int:
    """The variants a console command asks for (checked against the catalogue's range by the service)."""
    if not value.strip().isdigit():
        raise InputError(f"variants is a whole number, such as variants:3, not {value!r}")
    return int(value)


def variant_lines(drafts: list[Draft], snapshot: tuple[DraftProgress, ...]) -> list[str]:
    """Finished variants as a terminal shows them: each under its own heading, a held one without its text."""
    lines = []
    for place, (draft, progress) in enumerate(zip(drafts, snapshot, strict=True), 1):
        lines.append(f"── variant {place} · draft #{draft.id} · {progress.status} ──")
        if progress.held:
            lines.append("(held for a moderator's review; its text is not shown)")
        elif progress.error:
            lines.append(f"({progress.error})")
        else:
            lines.append(progress.text.strip())
    return lines


def _install_sigint(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> bool:
    """Let Ctrl-C cancel the streaming draft instead of quitting; not possible off the main thread."""
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def help_text(tasks: Iterable[Task]) -> str:
    """The commands: one line per task of the catalogue, with its fields (optional ones in brackets)."""
    lines = [" ".join([task.command, *(f'{field.name}:"…"' if field.required else f"[{field.name}:…]"
                                      for field in (*task.fields, *task.options))]) for task in tasks]
    return "\n".join([*lines, FEEDBACK_HELP])
