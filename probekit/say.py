"""Printing a message as plain text: never read as rich markup, never highlighted.

Messages hold text from users and plugins (a spec key such as ``[run]``, a metric's error): rich would
swallow ``[run]`` as a style tag, or raise on ``[/``. Every console print of such text goes through here.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text

_LABEL_STYLES = {"warning": "yellow", "error": "red", "note": "cyan", "skipped": "yellow"}


def say(console: Any, message: str, *, label: str = "", style: str = "") -> None:
    """Print ``message`` verbatim on a rich console, after a coloured ``label`` ("warning", "error") if given."""
    text = Text(message, style=style)
    if label:
        text = Text.assemble((f"{label} ", _LABEL_STYLES.get(label, "bold")), text)
    console.print(text, highlight=False, soft_wrap=True)
