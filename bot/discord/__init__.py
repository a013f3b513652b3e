"""The Discord front-end: slash commands, a context menu, buttons and modals over the same service."""
