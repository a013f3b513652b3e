"""Model versions as use cases: train one from the team's feedback, list, show, serve, retire.

A version is trained in `<versions>/.training-<name>/` (the export it reads, the trainer's
checkpoints) and becomes `<versions>/<name>/` only when complete; it is registered after that
folder is verified, so a killed or failed run registers nothing and keeps its checkpoint for
`--resume`. Serving is recorded in the database, so the bot — another process — follows a
`copydesk models serve` within `training.version_check_s`, without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import os
import re
import shutil
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import TrainingSettings
from bot.errors import ServiceError
from generation import ModelSource
from generation.served_versions import ServedVersions
from generation.training import (
    Evaluation,
    TrainingConfig,
    TrainingData,
    TrainingProgress,
    evaluate,
    train_adapter,
    write_version_folder,
)
from generation.training.version_folder import ADAPTER, base_sha256, verify
from storage import BASE_VERSION, DatasetSummary, ModelVersion, Repository, VersionState
from storage.export_folder import SPLITS, read_export

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LIBRARIES = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")
log = logging.getLogger("copydesk.versions")

Export = Callable[[Path], Awaitable[DatasetSummary]]


@dataclass(frozen=True)
class Trained:
    version: ModelVersion
    evaluation: Evaluation
    incumbent: str  # the version it was evaluated against


class ModelVersions:
    """Train, list, serve and retire versions of the model this deployment serves."""

    def __init__(self, repository: Repository, versions_dir: Path, base: Callable[[], ModelSource], *,
                 device: str = "auto", served: ServedVersions | None = None,
                 bot_running: Callable[[], Awaitable[bool]] | None = None,
                 defaults: TrainingSettings = TrainingSettings()) -> None:
        self._repository = repository
        self.defaults = defaults  # the deployment's `[training]`, for a run started without a command line
        self._dir = versions_dir
        self._base = base
        self._device = device
        self._served = served
        self._bot_running = bot_running
        self._base_sha256: str | None = None
        self._training: str | None = None

    @property
    def training(self) -> str | None:
        """The version this process is training now, if any: one run at a time, each wants the cores."""
        return self._training

    async def train(
        self, name: str, config: TrainingConfig, *, export_from: Path | None = None, export: Export | None = None,
        on_progress: Callable[[TrainingProgress], None] = lambda progress: None,
        stop: threading.Event | None = None, resume: bool = False, by: str | None = None, guild_id: str | None = None,
    ) -> Trained:
        """Export (unless `export_from`), train, evaluate against the serving version, write, register.

        With `by` (a moderator in Discord), the registered version is logged in the moderation log.
        """
        if self._training is not None:
            raise ServiceError(f"model version {self._training!r} is being trained now; one training runs at a time, "
                               "so please start this one once it has finished")
        self._training = name
        try:
            trained = await self._train(name, config, export_from=export_from, export=export, on_progress=on_progress,
                                        stop=stop, resume=resume)
        finally:
            self._training = None
        if by is not None:
            await self._repository.log_action(guild_id=guild_id, flag_id=None, draft_id=None, moderator_id=by,
                                              action="train-version", note=name)
        return trained

    async def _train(
        self, name: str, config: TrainingConfig, *, export_from: Path | None, export: Export | None,
        on_progress: Callable[[TrainingProgress], None], stop: threading.Event | None, resume: bool,
    ) -> Trained:
        await self._check_new_name(name)
        work = self._dir / f".training-{name}"
        if export_from is None:
            if export is None:
                raise ServiceError("give an export folder to train on, or let train export first")
            export_from = work / "export"
            if not (resume and (export_from / "README.md").is_file()):  # a resumed run reads the same rows
                if work.exists() and not resume:
                    raise ServiceError(f"{work} holds an earlier, unfinished run of {name!r}; add --resume to continue it, "
                                       "or remove the folder to start again")
                await export(export_from)
        exported = await asyncio.to_thread(read_export, export_from)
        data = TrainingData(
            files={(fmt, split): path for fmt in ("sft", "dpo", "kto") for split in SPLITS
                   if (path := exported.path(fmt, split)) is not None},
            left_out=exported.left_out_line(), provenance=exported.provenance(),
        )
        data.check_enough(config.method)  # before loading anything
        if not config.threads:
            config = dataclasses.replace(config, threads=await self.training_threads())
        base = await asyncio.to_thread(self._base)
        run = await asyncio.to_thread(train_adapter, base, data, work / "run", config, device=self._device,
                                      on_progress=on_progress, stop=stop, resume=resume)
        incumbent = await self._repository.serving_version()
        adapters = {} if incumbent == BASE_VERSION else {incumbent: Path((await self._repository.version(incumbent)).folder) / ADAPTER}
        evaluation = await asyncio.to_thread(evaluate, base, {**adapters, name: run.adapter}, data, device=self._device)
        facts: dict[str, Any] = {
            "name": name, "base_model": base.name, "base_sha256": await self._current_base_sha256(),
            "method": config.method, "hyperparameters": {**config.hyperparameters(), "steps": run.steps,
                                                         "train_loss": run.train_loss, "device": run.device},
            "seed": config.seed, "source_export": data.provenance, "libraries": _library_versions(),
            "wall_time_s": round(run.wall_time_s, 1),
            "evaluation": {**evaluation.as_dict(), "against": incumbent},
        }
        folder = await asyncio.to_thread(
            write_version_folder, self._dir / name, run.adapter, base,
            {**facts, "created": datetime.now(UTC).isoformat(timespec="seconds"), "evaluation_table": evaluation.table()},
        )
        try:
            version = await self._repository.register_version(**facts, folder=str(folder.path),
                                                              adapter_sha256=folder.adapter_sha256)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, folder.path, True)
            raise
        await asyncio.to_thread(shutil.rmtree, work, True)
        return Trained(version, evaluation, incumbent)

    async def list(self) -> list[ModelVersion]:
        return await self._repository.versions()

    async def show(self, name: str) -> ModelVersion:
        return await self._repository.version(name)

    async def serving(self) -> str:
        return await self._repository.serving_version()

    async def serve(self, name: str, *, by: str, guild_id: str | None = None) -> None:
        """New drafts go to `name` (`base`: the model without an adapter); logged in the moderation log.

        This process's engine switches first, so a version that cannot be opened changes nothing.
        """
        if name != BASE_VERSION:
            version = await self._repository.version(name)
            if version.state == VersionState.RETIRED:
                raise ServiceError(f"model version {name!r} is retired; train a new version instead")
            await self.check_servable(version)
        if self._served is not None:
            await self._served.serve(name)
        await self._repository.serve_version(name)
        await self._repository.log_action(guild_id=guild_id, flag_id=None, draft_id=None, moderator_id=by,
                                          action="serve-version", note=name)

    async def retire(self, name: str, *, by: str, guild_id: str | None = None) -> None:
        await self._repository.retire_version(name)
        await self._repository.log_action(guild_id=guild_id, flag_id=None, draft_id=None, moderator_id=by,
                                          action="retire-version", note=name)

    async def check_servable(self, version: ModelVersion) -> None:
        """Its folder is the one registered, and it was trained on the base this deployment serves."""
        try:
            await asyncio.to_thread(verify, Path(version.folder), version.adapter_sha256)
        except Exception as error:
            raise ServiceError(f"model version {version.name!r} cannot be served: {error}") from None
        current = await self._current_base_sha256()
        if current and version.base_sha256 != current:
            raise ServiceError(
                f"model version {version.name!r} is an adapter for another base model ({version.base_model}, "
                f"sha256 {version.base_sha256[:12]}…); this deployment serves {self._base().name} "
                f"(sha256 {current[:12]}…)")

    async def follow(self, every_s: float) -> None:
        """Runs until cancelled, in the bot: switch to the version the database says serves."""
        refused: str | None = None
        while True:
            await asyncio.sleep(every_s)
            if self._served is None:
                return
            try:
                wanted = await self._repository.serving_version()
                if wanted not in (self._served.serving, refused):
                    await self._served.serve(wanted)
                    log.info("now serving model version %s", wanted)
            except Exception as error:  # noqa: BLE001 - the bot goes on serving what it serves
                refused = wanted
                log.error("cannot serve model version %s, still serving %s: %s", wanted, self._served.serving, error)

    async def _check_new_name(self, name: str) -> None:
        if not NAME.match(name):
            raise ServiceError(f"a version name is 1–64 lowercase letters, digits, '.', '_' or '-', starting with a "
                               f"letter or digit (got {name!r})")
        if name == BASE_VERSION:
            raise ServiceError(f"{BASE_VERSION!r} names the model without an adapter; choose another name")
        if any(version.name == name for version in await self._repository.versions()):
            raise ServiceError(f"a model version named {name!r} exists already; choose another name "
                               "(`copydesk models list` shows them)")
        if (self._dir / name).exists():
            raise ServiceError(f"{self._dir / name} exists already; choose another name or move that folder away")

    async def training_threads(self) -> int:
        """All cores, or half of them (at least one) while a bot serves the database: another process, or
        this one, whose engine keeps its own worker's threads (torch's count is per thread)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        running = self._bot_running is not None and await self._bot_running()
        return max(1, cores // 2) if running else cores

    async def _current_base_sha256(self) -> str:
        if self._base_sha256 is None:
            base = await asyncio.to_thread(self._base)
            try:
                self._base_sha256 = await asyncio.to_thread(base_sha256, base)
            except Exception:  # noqa: BLE001 - a model served over HTTP has no local weights to hash
                self._base_sha256 = ""
        return self._base_sha256


def _library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
