"""What the tests and the benchmarks share, so that neither imports the other: the fake Discord
(`fake_discord`) and a bot started against it (`discord_harness`), `transformers serve` as a child
process (`served`), and many stored drafts for an export to chew on (`seeded_drafts`).
Not installed with copydesk (see pyproject's package list)."""
