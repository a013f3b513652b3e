"""Training model versions on the real embedded model, with TRL's real trainers, from a real export.

A few optimisation steps each, on short rows: enough to show that each method trains an adapter
that changes the model, that the version is registered with what it came from, that a stopped run
resumes, and that the bot serves a version without a restart while drafts in flight keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import base_model, open_service
from bot.config import ExportSettings, PrivacySettings, Settings
from bot.discord.client import publish_commands
from bot.discord.training import PROGRESS_EVERY_S
from bot.errors import ServiceError
from bot.service import DraftService, Member, Policy
from bot.versions import ModelVersions, Trained
from generation import ModelSource, resolve_model
from generation.training import TrainingConfig, TrainingData, TrainingError, TrainingInterrupted, train_adapter
from generation.training.version_folder import ADAPTER, CARD
from storage import DraftStatus, Repository, StorageError, VersionNotFound, open_database
from storage.export_folder import read_export
from support.discord_harness import EPHEMERAL, run_command, start_bot, stop_bot
from support.fake_discord import FakeDiscord
from tests.conftest import NO_AUTOMATIC_CHECKS_ENV, TEST_MAX_NEW_TOKENS
from tests.copydesk_process import copydesk, watch_until

PRODUCTS = ("rain boots", "oat milk", "a solar lantern", "trail socks", "cold brew", "a canvas tent", "wool hats",
            "a bike light", "honey", "a sketchbook", "a tea kettle", "running shoes", "a desk lamp", "jam",
            "a yoga mat", "a rain jacket", "a thermos", "maple syrup", "a backpack", "a notebook")
# Few steps on short rows: the production code path, at test size.
QUICK = TrainingConfig(method="sft", max_steps=2, batch_size=2, max_length=64, epochs=1.0)


async def _feedback(repository: Repository) -> None:
    """Per product: an ad and a regeneration rated apart, so every format gets rows; an improvement on some."""
    for index, product in enumerate(PRODUCTS):
        prompt: dict[str, Any] = {"task": "ad", "inputs": {"product": product, "audience": "walkers"},
                  "system_prompt": "You write short ads.", "user_prompt": f"Write an ad for {product}.",
                  "template_version": "ad-v1", "model": "SmolLM2-135M-Instruct", "quantization": "nf4",
                  "sampling": {"temperature": 0.7}, "seed": 0, "author_id": "alice"}
        good = await repository.create_draft(**prompt)
        await repository.finish_draft(good.id, output=f"{product.capitalize()} for every walk. Get yours today!",
                                      prompt_tokens=9, completion_tokens=9, latency_ms=1, ttft_ms=1)
        bad = await repository.create_draft(**prompt, parent_id=good.id)
        await repository.finish_draft(bad.id, output=f"{product}.", prompt_tokens=9, completion_tokens=3,
                                      latency_ms=1, ttft_ms=1)
        await repository.rate(good.id, "bob", 1)
        await repository.rate(bad.id, "bob", -1)
        if index % 4 == 0:
            await repository.add_improvement(bad.id, "bob", f"Meet {product}: made for walkers. Order now!")


@dataclass
class Deployment:
    """A data folder with a database of feedback and its export, as an operator has them."""

    data: Path
    export: Path

    def settings(self) -> Settings:
        return Settings.model_validate({"storage": {"data_dir": str(self.data)},
                                        "engine": {"max_new_tokens": TEST_MAX_NEW_TOKENS, "max_context_tokens": 512,
                                                   "max_concurrent": 4},
                                        "privacy": {"training_consent_default": True},
                                        "training": {"version_check_s": 0.05}})

    def database(self) -> Path:
        return self.data / "copydesk.sqlite3"


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("deployment")
    data = root / "data"
    database = await open_database(f"sqlite+aiosqlite:///{data / 'copydesk.sqlite3'}")
    repository = Repository(database)
    await _feedback(repository)
    policy = Policy(privacy=PrivacySettings(training_consent_default=True), export=ExportSettings(test_fraction=0.25),
                    member_key=b"test member key")
    await DraftService(repository, None, policy).export(root / "export")
    await database.close()
    return Deployment(data, root / "export")


@pytest.fixture(scope="module")
def base(cache_dir: Path) -> ModelSource:
    return resolve_model("", cache_dir)


def _data(export: Path) -> TrainingData:
    exported = read_export(export)
    return TrainingData(files={(fmt, split): path for fmt in ("sft", "dpo", "kto") for split in ("train", "test")
                               if (path := exported.path(fmt, split))},
                        left_out=exported.left_out_line(), provenance=exported.provenance())


def _versions(deployment: Deployment, repository: Repository) -> ModelVersions:
    settings = deployment.settings()
    return ModelVersions(repository, settings.training.versions_dir(settings.storage.data_dir),
                         lambda: base_model(settings), device="cpu")


def _logits_with_and_without(base: ModelSource, adapter: Path) -> tuple[object, object]:
    import torch
    from peft import PeftModel

    from generation.loading import load_model

    model = PeftModel.from_pretrained(load_model(base, "nf4", "cpu", bf16_prefill=False).model, str(adapter))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.inference_mode():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    return tuned, plain


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_each_method_trains_an_adapter_that_changes_the_logits(
    method: str, deployment: Deployment, base: ModelSource, tmp_path: Path,
) -> None:
    run = train_adapter(base, _data(deployment.export), tmp_path / "run", replace(QUICK, method=method),
                        device="cpu")
    assert run.steps == {method: 2}
    assert (run.adapter / "adapter_model.safetensors").is_file()
    config = json.loads((run.adapter / "adapter_config.json").read_text())
    assert config["modules_to_save"] is None, "vLLM refuses adapters that carry whole modules"
    tuned, plain = _logits_with_and_without(base, run.adapter)
    assert float((tuned - plain).abs().max()) > 1e-4  # type: ignore[operator]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
async def registered(deployment: Deployment) -> Trained:
    """Version v1, trained with `copydesk train v1 --from EXPORT`'s use case."""
    database = await open_database(f"sqlite+aiosqlite:///{deployment.database()}")
    try:
        return await _versions(deployment, Repository(database)).train(
            "v1", QUICK, export_from=deployment.export)
    finally:
        await database.close()


def test_a_version_is_registered_with_the_export_it_came_from_and_its_evaluation(
    deployment: Deployment, registered: Trained,
) -> None:
    version = registered.version
    folder = Path(version.folder)
    exported = {path.name: _sha256(path) for path in deployment.export.iterdir() if path.name != "README.md"}
    assert version.source_export["files"] == exported
    card = (folder / CARD).read_text()
    assert all(digest in card for digest in exported.values()), "the model card names every file it was trained on"
    assert version.adapter_sha256 == _sha256(folder / ADAPTER / "adapter_model.safetensors") and version.adapter_sha256 in card
    assert version.state == "candidate" and version.method == "sft" and version.seed == 0
    assert set(version.libraries) >= {"torch", "transformers", "trl", "peft", "bitsandbytes"}
    scores = version.evaluation["scores"]
    assert set(scores) == {"base", "v1"} and version.evaluation["against"] == "base"
    assert set(scores["v1"]) == {"sft_loss", "dpo_accuracy", "dpo_margin", "kto_gap"}
    assert scores["v1"] != scores["base"]
    assert not (folder.parent / ".training-v1").exists(), "the run's checkpoints go once the version is registered"
    with sqlite3.connect(deployment.database()) as connection:
        assert connection.execute("SELECT name, state FROM model_versions").fetchall() == [("v1", "candidate")]


async def test_a_stopped_run_registers_nothing_and_resumes_from_its_checkpoint(deployment: Deployment) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{deployment.database()}")
    versions = _versions(deployment, Repository(database))
    stop = threading.Event()
    config = replace(QUICK, max_steps=3)
    try:
        with pytest.raises(TrainingInterrupted, match="--resume"):
            await versions.train("v-stopped", config, export_from=deployment.export,
                                 on_progress=lambda progress: stop.set(), stop=stop)
        work = deployment.data / "versions" / ".training-v-stopped"
        assert (work / "run" / "sft" / "checkpoint-1").is_dir()
        assert "v-stopped" not in [version.name for version in await versions.list()]
        with pytest.raises(TrainingError, match="add --resume to continue"):
            await versions.train("v-stopped", config, export_from=deployment.export)
        seen: list[int] = []
        trained = await versions.train("v-stopped", config, export_from=deployment.export, resume=True,
                                       on_progress=lambda progress: seen.append(progress.step))
    finally:
        await database.close()
    assert seen == [2, 3], "the resumed run starts after its checkpoint"
    assert trained.version.hyperparameters["steps"] == {"sft": 3}


def _copy(deployment: Deployment, data: Path, *, share_versions: bool) -> Deployment:
    data.mkdir()
    shutil.copy(deployment.database(), data / "copydesk.sqlite3")
    if share_versions:
        (data / "versions").symlink_to(deployment.data / "versions")
    return Deployment(data, deployment.export)


@pytest.fixture
async def copied(deployment: Deployment, registered: Trained, tmp_path: Path) -> AsyncIterator[Deployment]:
    """A copy of the deployment's database (its version folders are shared, read only)."""
    yield _copy(deployment, tmp_path / "data", share_versions=True)


@pytest.fixture
async def writable(deployment: Deployment, registered: Trained, tmp_path: Path) -> AsyncIterator[Deployment]:
    """A copy of the deployment's database with a versions folder of its own, to train new versions into."""
    yield _copy(deployment, tmp_path / "data", share_versions=False)


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Callable[[int], None]]:
    """`folder` on a filesystem of its own, `megabytes` big (tmpfs); yields a function that resizes it."""
    folder.mkdir(parents=True, exist_ok=True)

    def mount(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)

    mounted = mount(f"size={megabytes}m")
    if mounted.returncode != 0:
        pytest.skip(f"a small filesystem needs `mount -t tmpfs`, which is not permitted here: {mounted.stderr.strip()}")
    try:
        yield lambda size: mount("remount", f"size={size}m").check_returncode()
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: a file still mapped keeps no mount


@pytest.fixture
def no_automatic_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NO_AUTOMATIC_CHECKS_ENV.items():
        monkeypatch.setenv(name, value)


async def test_the_bot_serves_a_new_version_without_a_restart_and_a_streaming_draft_keeps_its_own(
    copied: Deployment, no_automatic_checks: None, tmp_path: Path,
) -> None:
    settings = copied.settings()
    member = Member("carol", guild_id="1", channel_id="2")
    async with open_service(settings, as_bot=True) as bot:
        first = await bot.create_draft(member, "ad", {"product": "rain boots", "audience": "walkers"})
        stream = bot.generate(first.id)
        await anext(stream)  # streaming on the base model
        cli = await open_database(settings.storage.database_url())  # `copydesk models serve v1`, another process
        try:
            await _versions(copied, Repository(cli)).serve("v1", by="cli:dana")
        finally:
            await cli.close()
        async with asyncio.timeout(120):
            while bot.served.serving != "v1":
                await asyncio.sleep(0.05)
        second = await bot.create_draft(member, "ad", {"product": "oat milk", "audience": "walkers"})
        async for last in stream:
            pass
        assert last.status == DraftStatus.DONE
        async for done in bot.generate(second.id):
            pass
        assert done.status == DraftStatus.DONE and done.text
        assert [(d.id, d.model_version) for d in (await bot.get(first.id), await bot.get(second.id))] == [
            (first.id, "base"), (second.id, "v1")]
        await bot.rate(member, second.id, True)
        await bot.export(tmp_path / "export")
    rows = [json.loads(line) for name in ("kto-train.jsonl", "kto-test.jsonl")
            for line in (tmp_path / "export" / name).read_text().splitlines()]
    assert {row["metadata"]["draft_id"]: row["metadata"]["model_version"] for row in rows}[second.id] == "v1"
    with sqlite3.connect(copied.database()) as connection:
        assert connection.execute("SELECT moderator_id, action, note FROM moderation_actions").fetchall() == [
            ("cli:dana", "serve-version", "v1")]


async def test_bad_training_input_gets_a_clear_message_and_changes_nothing(
    copied: Deployment, tmp_path: Path,
) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{copied.database()}")
    versions = _versions(copied, Repository(database))
    quick = QUICK
    try:
        before = [version.name for version in await versions.list()]
        with pytest.raises(ServiceError, match="exists already"):
            await versions.train("v1", quick, export_from=copied.export)
        with pytest.raises(ServiceError, match="names the model without an adapter"):
            await versions.train("base", quick, export_from=copied.export)
        with pytest.raises(ServiceError, match="lowercase letters"):
            await versions.train("My Version!", quick, export_from=copied.export)
        stranger = tmp_path / "not-an-export"
        stranger.mkdir()
        (stranger / "rows.jsonl").write_text("{}\n")
        with pytest.raises(StorageError, match="is not a copydesk export"):
            await versions.train("v9", quick, export_from=stranger)
        edited = tmp_path / "edited"
        shutil.copytree(copied.export, edited)
        with (edited / "sft-train.jsonl").open("a") as handle:
            handle.write("{}\n")
        with pytest.raises(StorageError, match="changed since"):
            await versions.train("v9", quick, export_from=edited)
        small = tmp_path / "small"
        repository = Repository(small_db := await open_database(f"sqlite+aiosqlite:///{tmp_path / 'small.sqlite3'}"))
        draft = await repository.create_draft(task="ad", inputs={}, system_prompt="s", user_prompt="u",
                                              template_version="ad-v1", model="m", quantization="nf4", sampling={},
                                              seed=0, author_id="erin")
        await repository.finish_draft(draft.id, output="Buy it.", prompt_tokens=1, completion_tokens=1,
                                      latency_ms=1, ttft_ms=1)
        await repository.rate(draft.id, "bob", 1)
        await repository.add_flag(draft.id, "off topic", member_id="bob")
        await DraftService(repository, None, Policy(privacy=PrivacySettings(training_consent_default=True),
                                                   member_key=b"test member key")).export(small)
        await small_db.close()
        with pytest.raises(TrainingError, match=r"needs at least 8 sft training rows; the export has 0 "
                                                r"\(the export left out 1 awaiting review\)"):
            await versions.train("v9", quick, export_from=small)
        with pytest.raises(TrainingError, match="kto needs drafts rated both ways"):
            TrainingData(files={("kto", "train"): _only_good_kto(tmp_path)}).check_enough("kto")

        with pytest.raises(VersionNotFound, match="no model version named 'nope'"):
            await versions.serve("nope", by="cli:dana")
        with sqlite3.connect(copied.database()) as connection:
            connection.execute("UPDATE model_versions SET base_sha256 = 'f00d' WHERE name = 'v1'")
        with pytest.raises(ServiceError, match="an adapter for another base model"):
            await versions.serve("v1", by="cli:dana")
        await versions.retire("v1", by="cli:dana")
        with pytest.raises(ServiceError, match="is retired"):
            await versions.serve("v1", by="cli:dana")
        assert await versions.serving() == "base"
        assert [version.name for version in await versions.list()] == before
        assert not (copied.data / "versions" / "v9").exists() and not (copied.data / "versions" / ".training-v9").exists()
    finally:
        await database.close()


def _only_good_kto(folder: Path) -> Path:
    path = folder / "kto-train.jsonl"
    row = {"prompt": [{"role": "user", "content": "u"}], "completion": [{"role": "assistant", "content": "a"}],
           "label": True}
    path.write_text("".join(json.dumps(row) + "\n" for _ in range(10)))
    return path


async def test_a_moderator_serves_a_version_from_discord_and_its_drafts_say_so(
    copied: Deployment, no_automatic_checks: None, fake: FakeDiscord,
) -> None:
    async with open_service(copied.settings()) as service:
        bot, task = await start_bot(fake, service)
        try:
            await publish_commands(fake.token, fake.guild.id)
            refused = await fake.invoke_command("models", {"name": "v1"}, subcommand="serve",
                                                user=fake.guild.member("alice"))
            assert (await refused.wait_for_response())["data"]["content"] == "⚠️ Only moderators can do that."
            missing = await fake.invoke_command("models", {"name": "v7"}, subcommand="serve",
                                                user=fake.guild.member("mia"))
            said = await missing.wait_for_original(lambda message: bool(message["content"]), timeout=60)
            assert said["content"].startswith("⚠️ there is no model version named 'v7'")
            served = await fake.invoke_command("models", {"name": "v1"}, subcommand="serve",
                                               user=fake.guild.member("mia"))
            said = await served.wait_for_original(lambda message: bool(message["content"]), timeout=120)
            assert said["content"].startswith("New drafts now come from **v1**")
            listed = await fake.invoke_command("models", {}, subcommand="list", user=fake.guild.member("mia"))
            assert "Serving: **v1**" in (await listed.wait_for_response())["data"]["content"]
            _, message = await run_command(fake, "draft", {"product": "tea", "audience": "walkers"}, subcommand="ad")
            assert message["content"].startswith("-# draft #") and "· version v1" in message["content"].split("\n")[0]
        finally:
            await stop_bot(bot, task)
    with sqlite3.connect(copied.database()) as connection:
        assert connection.execute("SELECT moderator_id, action, note FROM moderation_actions").fetchall() == [
            (str(fake.guild.member("mia").user.id), "serve-version", "v1")]


def _quick(settings: Settings, max_steps: int) -> Settings:
    """The deployment's settings with `[training] max_steps` (the production path, a few steps long) and
    the test split the deployment's export has."""
    return settings.model_copy(update={"training": settings.training.model_copy(update={"max_steps": max_steps}),
                                       "export": settings.export.model_copy(update={"test_fraction": 0.25})})


async def test_a_moderator_trains_a_version_from_discord_while_the_bot_goes_on_answering(
    writable: Deployment, no_automatic_checks: None, fake: FakeDiscord,
) -> None:
    mia, alice, channel = fake.guild.member("mia"), fake.guild.member("alice"), fake.guild.channels[0]
    async with open_service(_quick(writable.settings(), max_steps=3)) as service:
        cores = len(os.sched_getaffinity(0))
        assert await service.versions.training_threads() == max(1, cores // 2), "the engine keeps its cores"
        before = [(version.name, version.state) for version in await service.versions.list()]
        bot, task = await start_bot(fake, service)
        try:
            await publish_commands(fake.token, fake.guild.id)
            refused = await fake.invoke_command("models", {"name": "v2", "method": "sft"}, subcommand="train", user=alice)
            assert (await refused.wait_for_response())["data"]["content"] == "⚠️ Only moderators can do that."
            taken = await fake.invoke_command("models", {"name": "v1", "method": "sft"}, subcommand="train", user=mia)
            assert (await taken.wait_for_response())["data"]["flags"] == EPHEMERAL
            said = await taken.wait_for_original(lambda message: bool(message["content"]), timeout=60)
            assert said["content"].startswith("⚠️ a model version named 'v1' exists already; choose another name")

            started = await fake.invoke_command("models", {"name": "v2", "method": "sft", "epochs": 1.0},
                                                subcommand="train", user=mia)
            assert (await started.wait_for_response())["data"]["flags"] == EPHEMERAL
            progress = await fake.wait_for(lambda: next((m for m in fake.channel_messages(channel)
                                                         if m["content"].startswith("🏋️ Training **v2**")), None),
                                           timeout=120)
            assert service.versions.training == "v2"
            listed = await fake.invoke_command("models", {}, subcommand="list", user=mia)
            answer = await listed.wait_for_response()
            assert "Serving: **base**" in answer["data"]["content"] and listed.response_delay is not None \
                and listed.response_delay < 3, "the bot answers while it trains"
            second = await fake.invoke_command("models", {"name": "v3", "method": "dpo"}, subcommand="train", user=mia)
            answer = await second.wait_for_response()
            assert answer["data"]["flags"] == EPHEMERAL and answer["data"]["content"].startswith(
                "⚠️ Model version **v2** is being trained now; one training runs at a time")
            assert service.versions.training == "v2", "both answered while v2 was still training"
            result = await fake.wait_for(lambda: next((m for m in fake.channel_messages(channel)
                                                       if m["content"].startswith("✅ Model version **v2**")), None),
                                         timeout=300)
        finally:
            await stop_bot(bot, task)
        assert "a candidate, not served yet" in result["content"] and "held-out loss per answer token" in result["content"]
        assert [(v.name, v.state) for v in await service.versions.list()] == [*before, ("v2", "candidate")]
        assert await service.versions.serving() == "base"
        assert (await service.versions.show("v2")).hyperparameters["steps"] == {"sft": 3}
    edits = [request.at for request in fake.requests if request.method == "PATCH"
             and request.path == f"/channels/{channel.id}/messages/{progress['id']}"]
    posted = next(request.at for request in fake.requests if request.method == "POST"
                  and request.path == f"/channels/{channel.id}/messages" and request.json["content"].startswith("🏋️"))
    moments = [posted, *edits]
    assert all(later - earlier >= PROGRESS_EVERY_S - 0.1 for earlier, later in zip(moments, moments[1:])), moments
    assert not list((writable.data / "versions").glob(".training-*")), "the run's work folder goes once registered"
    with sqlite3.connect(writable.database()) as connection:
        assert connection.execute("SELECT moderator_id, action, note FROM moderation_actions").fetchall() == [
            (str(mia.user.id), "train-version", "v2")]


async def test_a_disk_that_fills_while_the_adapter_is_saved_registers_nothing_and_says_so(
    writable: Deployment,
) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{writable.database()}")
    versions = _versions(writable, Repository(database))
    work = writable.data / "versions" / ".training-v-full"
    try:
        before = [version.name for version in await versions.list()]
        with small_disk(writable.data / "versions", megabytes=2):
            with pytest.raises(TrainingError, match=r"the disk holding .*\.training-v-full/run/sft is full; nothing was "
                                                    r"registered\. Free some space and run the same command with "
                                                    r"--resume \(sft had no checkpoint yet, so it starts again\)"):
                await versions.train("v-full", QUICK, export_from=writable.export)
            assert not (work / "run" / "sft" / ".final-partial").exists(), "the half-written adapter is removed"
            assert not (writable.data / "versions" / "v-full").exists()
        assert [version.name for version in await versions.list()] == before
    finally:
        await database.close()


async def test_a_disk_that_fills_while_the_version_folder_is_written_keeps_the_adapter_to_resume_from(
    writable: Deployment,
) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{writable.database()}")
    versions = _versions(writable, Repository(database))
    folder = writable.data / "versions"
    adapter = folder / ".training-v-full" / "run" / "sft" / "final"
    try:
        before = [version.name for version in await versions.list()]
        with small_disk(folder, megabytes=64) as resize:  # the adapter fits, the merged checkpoint does not
            with pytest.raises(TrainingError, match=r"the disk holding .*versions is full; nothing was registered\. "
                                                    r"Free some space and run the same command with --resume \(the "
                                                    r"trained adapter is kept"):
                await versions.train("v-full", QUICK, export_from=writable.export)
            assert [path.name for path in folder.iterdir()] == [".training-v-full"], "no partial version folder"
            assert [version.name for version in await versions.list()] == before
            assert _loads_whole(adapter / "adapter_model.safetensors")
            assert json.loads((adapter / "adapter_config.json").read_text())["r"] == QUICK.lora_rank
            resize(1024)
            trained = await versions.train("v-full", QUICK, export_from=writable.export, resume=True)
            assert Path(trained.version.folder) == folder / "v-full" and not (folder / ".training-v-full").exists()
        assert [version.name for version in await versions.list()] == [*before, "v-full"]
    finally:
        await database.close()


def _loads_whole(weights: Path) -> bool:
    """Every tensor of a safetensors file reads back (copied, so no map keeps the file busy)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as opened:
        return all(opened.get_tensor(key).clone().numel() > 0 for key in opened.keys())


def test_a_train_killed_while_writing_its_version_folder_registers_nothing_and_resume_finishes_it(
    writable: Deployment,
) -> None:
    cwd, versions = writable.data.parent, writable.data / "versions"  # `copydesk` finds its database in ./data
    train = ("train", "v-killed", "--from", str(writable.export), "--max-steps", "2")
    before = _registered(writable)
    process = copydesk(cwd, *train)
    writing = watch_until(process, lambda: any(versions.glob(".v-killed-partial-*")))
    assert writing is not None, (cwd / "output.log").read_text()
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (versions / "v-killed").exists()
    assert _registered(writable) == before, "nothing registered"
    assert _loads_whole(versions / ".training-v-killed" / "run" / "sft" / "final" / "adapter_model.safetensors")

    resumed = copydesk(cwd, *train, "--resume")
    assert resumed.wait(timeout=600) == 0, (cwd / "output.log").read_text()
    assert "trained v-killed (sft" in (cwd / "output.log").read_text()
    assert _registered(writable) == sorted([*before, ("v-killed", "candidate")])
    assert sorted(path.name for path in versions.iterdir()) == ["v-killed"], "no leftover of the killed run"


def _registered(deployment: Deployment) -> list[tuple[str, str]]:
    with sqlite3.connect(deployment.database()) as connection:
        return connection.execute("SELECT name, state FROM model_versions ORDER BY name").fetchall()
