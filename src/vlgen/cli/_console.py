"""Consoles shared by the commands: stdout for data, stderr for messages and tables meant for people.

One message is one line at any terminal width (COLUMNS 40..300, tty or not), so logs stay greppable and
tests can match a whole message: text is never wrapped or cut (`soft_wrap`), and a table is laid out at
its natural width (title included) rather than squeezed into the terminal; a terminal narrower than that
folds the long lines itself. Progress bars (vlgen.progress) keep adapting to the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table
from rich.text import Text


def natural_width(console: Console, table: Table) -> int:
    """Columns a table needs so that no cell and not its title or caption is wrapped."""
    widest = Measurement.get(console, console.options.update_width(10_000), table).maximum
    for note in (table.title, table.caption):
        if note is not None:
            widest = max(widest, Text.from_markup(note).cell_len if isinstance(note, str) else note.cell_len)
    return widest


class OneLineConsole(Console):
    """A rich Console whose messages are never wrapped or cut (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        objects = tuple(self._laid_out(o) if isinstance(o, Table) else o for o in objects)
        kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)

    def _laid_out(self, table: Table) -> Segments:
        """The table's lines at its natural width (rich's own `print(width=)` is capped at the terminal's)."""
        width = natural_width(self, table)
        table.min_width = max(table.min_width or 0, width)  # a title is wrapped to the table's width otherwise
        lines = self.render_lines(table, self.options.update_width(width), pad=False, new_lines=True)
        return Segments([seg for line in lines for seg in line])


out = OneLineConsole()
err = OneLineConsole(stderr=True)
