"""The `copydesk` command as a user runs it: a real process, the real model, a SQLite file in ./data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from conftest import NO_AUTOMATIC_CHECKS_ENV, rows
from storage import Repository

COPYDESK = str(Path(sys.executable).with_name("copydesk"))


def copydesk(*args: str, cwd: Path, cache_dir: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("COPYDESK_")}
    environ |= {"COPYDESK_CACHE_DIR": str(cache_dir), "COPYDESK_ENGINE__MAX_NEW_TOKENS": "16"} | NO_AUTOMATIC_CHECKS_ENV | env
    return subprocess.run([COPYDESK, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env=environ, timeout=300)



def test_a_console_session_drafts_rates_improves_and_stores_everything(tmp_path: Path, cache_dir: Path) -> None:
    session = "\n".join([
        '/draft ad product:"oat milk" audience:"baristas" tone:professional',
        "/rate up",
        "/regenerate",
        "/rate down",
        '/improve #1 text:"Oat milk that foams like a dream."',
        '/flag reason:"too vague"',
        '/write blog topic:"latte art"',
        '/summarize text:"   "',
        "/list",
        "/quit",
    ])
    result = copydesk("console", "--user", "alice", cwd=tmp_path, cache_dir=cache_dir, stdin=session)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SmolLM2-135M-Instruct (int4, cpu)" in out
    assert "── draft #1 · ad" in out and "── draft #2 · ad" in out and "── draft #3 · blog" in out
    assert out.count("── done ·") == 3
    assert "rated up — now 👍 1 · 👎 0" in out and "rated down — now 👍 0 · 👎 1" in out
    assert "error: text is required for /summarize" in out
    assert "Traceback" not in out + result.stderr

    database = tmp_path / "data" / "copydesk.sqlite3"
    assert rows(database, "SELECT id, task, status, parent_id, author_id, quantization FROM drafts ORDER BY id") == [
        (1, "ad", "done", None, "console:alice", "int4"),
        (2, "ad", "done", 1, "console:alice", "int4"),
        (3, "blog", "done", None, "console:alice", "int4"),
    ]
    assert rows(database, "SELECT draft_id, member_id, value FROM ratings ORDER BY draft_id") == [
        (1, "console:alice", 1), (2, "console:alice", -1)
    ]
    assert rows(database, "SELECT draft_id, text FROM improvements") == [(1, "Oat milk that foams like a dream.")]
    assert rows(database, "SELECT draft_id, reason, source FROM flags") == [(2, "too vague", "member")]
    outputs = rows(database, "SELECT output FROM drafts")
    assert all(output.strip() and output in out for (output,) in outputs)

    status = copydesk("status", cwd=tmp_path, cache_dir=cache_dir)
    assert status.returncode == 0, status.stderr
    assert "drafts in the last hour: 0 queued, 0 running, 3 done, 0 failed, 0 cancelled" in status.stdout
    assert "model: not loaded in this process" in status.stdout
    assert float(re.search(r"tokens/s over the last hour: ([\d.]+)", status.stdout).group(1)) > 0

    exported = copydesk("export", "--out", "dataset", "--progress", "--test-fraction", "0", cwd=tmp_path,
                        cache_dir=cache_dir, COPYDESK_PRIVACY__TRAINING_CONSENT_DEFAULT="true")
    assert exported.returncode == 0, exported.stderr
    assert re.search(r"export: 100%.*2/2 \[", exported.stderr), "the progress bar counts the drafts read"
    for export_format in ("sft", "dpo", "kto", "raw"):
        count = len(load_dataset("json", data_files=str(tmp_path / "dataset" / f"{export_format}-train.jsonl"),
                                 split="train"))
        assert f"{export_format}: {count} rows ({count} train, 0 test)" in exported.stdout
        assert count >= 1
    assert "kto labels: 1 good, 0 bad" in exported.stdout
    assert (tmp_path / "dataset" / "README.md").is_file() and (tmp_path / "dataset" / "raw-train.parquet").is_file()

    quiet = copydesk("export", "--out", "blogs", "--task", "blog", "--format", "raw", cwd=tmp_path, cache_dir=cache_dir,
                     COPYDESK_PRIVACY__TRAINING_CONSENT_DEFAULT="true")
    assert quiet.returncode == 0 and quiet.stderr == "", "no progress bar when stderr is not a terminal"
    assert "raw: 1 rows" in quiet.stdout
    assert sorted(p.name for p in (tmp_path / "blogs").iterdir()) == [
        "README.md", "raw-test.jsonl", "raw-test.parquet", "raw-train.jsonl", "raw-train.parquet"]


def test_the_operator_allows_their_own_drafts_as_training_data_and_can_erase_them(
    tmp_path: Path, cache_dir: Path
) -> None:
    first = copydesk("console", "--user", "olga", cwd=tmp_path, cache_dir=cache_dir, stdin="\n".join([
        '/draft ad product:"rain boots" audience:"commuters"', "/rate up", "/privacy", "/privacy allow", "/privacy",
        "/privacy maybe", "/quit", ""]))
    assert first.returncode == 0, first.stderr
    assert "stored about you: 1 drafts, 1 ratings, 0 improvements, 0 flags" in first.stdout
    assert ("your drafts may not be used as training data (the configured default, "
            "privacy.training_consent_default)") in first.stdout
    assert "your drafts may now be used as training data." in first.stdout
    assert "your drafts may be used as training data (your choice)" in first.stdout
    assert "error: say /privacy show, /privacy allow, /privacy deny or /privacy delete" in first.stdout
    assert rows(tmp_path / "data" / "copydesk.sqlite3", "SELECT member_id, granted FROM consents") == [
        ("console:olga", 1)]
    exported = copydesk("export", "--out", "dataset", "--format", "raw", cwd=tmp_path, cache_dir=cache_dir)
    assert exported.returncode == 0 and "raw: 1 rows" in exported.stdout, exported.stdout + exported.stderr

    second = copydesk("console", "--user", "olga", cwd=tmp_path, cache_dir=cache_dir, stdin="\n".join([
        "/privacy delete", "no", "/privacy delete", "yes", "/privacy", "/quit", ""]))
    assert second.returncode == 0, second.stderr
    assert "nothing was erased." in second.stdout
    assert "erased 1 drafts, 1 ratings, 0 improvements, 0 flags." in second.stdout
    assert "stored about you: 0 drafts, 0 ratings, 0 improvements, 0 flags" in second.stdout
    assert rows(tmp_path / "data" / "copydesk.sqlite3", "SELECT id FROM drafts") == []
    assert "Traceback" not in first.stderr + second.stderr


def test_a_one_shot_draft_prints_the_text_and_stores_it(tmp_path: Path, cache_dir: Path) -> None:
    result = copydesk("draft", "summary", "--text", "The river flooded the town; everyone was safe.",
                      cwd=tmp_path, cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("draft #1 done")
    [(output,)] = rows(tmp_path / "data" / "copydesk.sqlite3", "SELECT output FROM drafts WHERE status = 'done'")
    assert output.strip() and result.stdout.strip() == output.strip()


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (("draft", "ad", "--product", "x"), "", "Error: audience is required for /draft ad"),
        (("run",), "", "Error: no Discord bot token: set COPYDESK_DISCORD_TOKEN in the environment."),
        (("sync", "--guild", "1"), "", "To try copydesk without Discord, run `copydesk console`."),
        (("draft", "ad", "--product", "x", "--audience", "y", "--tone", "grim"), "",
         "Error: tone must be one of friendly, professional, playful, bold, luxurious (got 'grim')"),
        (("draft", "ad", "--product", "x", "--audience", "y"), "[model]\nquantization = \"fp4\"\n",
         "model.quantization: Input should be 'auto', 'nf4', 'int4', 'int8' or 'none' (got 'fp4')"),
        (("draft", "ad", "--product", "x", "--audience", "y"), "[model]\nquantization = \"int4\"\ndevice = \"cuda\"\n",
         "model.quantization int4 (torchao's CPU kernel) runs on the CPU only; use nf4 or auto on CUDA"),
        (("export", "--format", "sft", "--out", "x"), "[storage]\ndatadir = \"d\"\n",
         "storage.datadir: unknown key"),
        (("console",), "[engine\n", "is not valid TOML: Expected ']'"),
        (("draft", "ad", "--product", "x", "--audience", "y"), "[model]\nname = \"/no/such/model\"\n",
         "model folder /no/such/model does not exist"),
        (("draft", "ad", "--product", "x", "--audience", "y"), "[storage]\ndata_dir = \"blocker/data\"\n",
         "cannot write the database at"),
    ],
)
def test_bad_input_gets_a_clear_error_and_no_traceback(
    tmp_path: Path, cache_dir: Path, args: tuple[str, ...], config: str, message: str
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    if config:
        (tmp_path / "config.toml").write_text(config)
    result = copydesk(*args, cwd=tmp_path, cache_dir=cache_dir)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or not rows(tmp_path / "data" / "copydesk.sqlite3",
                                                         "SELECT id FROM drafts")


def test_a_named_config_file_that_is_missing_is_reported(tmp_path: Path, cache_dir: Path) -> None:
    result = copydesk("--config", "nope.toml", "export", "--format", "raw", "--out", "x", cwd=tmp_path,
                      cache_dir=cache_dir)
    assert result.returncode == 1 and "config file nope.toml does not exist" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "last week"), "Invalid value for '--since': 'last week' does not match the formats '%Y-%m-%d'"),
        (("--test-fraction", "1"), "Invalid value for '--test-fraction': 1.0 is not in the range 0<=x<1."),
        (("--task", "poem"), "Invalid value for '--task': 'poem' is not one of 'ad', 'blog', 'summary'."),
        (("--min-votes", "-1"), "Invalid value for '--min-votes': -1 is not in the range x>=0."),
    ],
)
def test_bad_export_options_are_refused_before_anything_is_written(
    tmp_path: Path, cache_dir: Path, args: tuple[str, ...], message: str
) -> None:
    result = copydesk("export", "--out", "dataset", *args, cwd=tmp_path, cache_dir=cache_dir)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dataset").exists()


async def test_an_empty_export_says_why_on_the_command_line(repository: Repository, tmp_path: Path, cache_dir: Path) -> None:
    """After a first console session nobody has consented yet: the export says so, and what to do."""
    for output in ("Oat milk that foams.", "Oat milk, again."):
        draft = await repository.create_draft(
            task="ad", inputs={"product": "oat milk"}, system_prompt="s", user_prompt="u", template_version="ad-v1",
            model="m", quantization="nf4", sampling={}, seed=0, author_id="console:alice")
        await repository.finish_draft(draft.id, output=output, prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                      ttft_ms=1)
    exported = copydesk("export", "--out", "dataset", cwd=tmp_path, cache_dir=cache_dir)
    assert exported.returncode == 0, exported.stderr
    assert "0 drafts read\nleft out: 2 drafts (2 no consent)\ntraining use is opt-in: members allow it with /privacy" \
           in exported.stdout
    assert "training_consent_default = true" in exported.stdout
