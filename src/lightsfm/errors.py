"""User-facing errors: each carries a one-line message that names the file and the reason."""


class LightsfmError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting with status 1."""


class ImageError(LightsfmError):
    """One image cannot be used; the rest of the scene goes on without it."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
