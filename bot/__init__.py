"""The bot: configuration, the front-end-neutral service, and its front-ends (terminal, CLI)."""
