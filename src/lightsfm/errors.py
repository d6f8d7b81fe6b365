"""User-facing errors: each carries a one-line message that names the file and the reason."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` with line breaks, control characters and undecodable bytes (surrogates from a
    non-UTF-8 file name) escaped, so that a message stays one line and can be written as UTF-8."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        cat = unicodedata.category(c)
        if cat in ("Cc", "Cs", "Zl", "Zp"):
            out.append(ascii(c)[1:-1])  # '\n' → \\n, '\udcff' → \\udcff
        else:
            out.append(c)  # other non-printables (e.g. a narrow no-break space) are fine in a line
    return "".join(out)


class LightsfmError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting with status 1."""


class ImageError(LightsfmError):
    """One image cannot be used; the rest of the scene goes on without it."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{printable(str(path))}: {reason}")
        self.path = path
        self.reason = reason
