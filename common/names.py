"""Names taken from files (tensor, layer, class names) made safe to put in a one-line message."""

from __future__ import annotations

import unicodedata

# Long enough for any name a person gives a layer; a 300-character generated name is cut.
MAX_SHOWN_CHARS = 80


def shown(name: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``name`` without control or format characters (newlines, ANSI escapes, bidi overrides),
    cut to ``limit`` characters with an ellipsis."""
    text = str(name)
    clean = "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "\u2026"
