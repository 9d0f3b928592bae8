"""Consoles shared by the commands: stdout for data, stderr for messages and tables meant for people."""

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
