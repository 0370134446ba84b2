"""User-facing errors: each carries a one-line message that the CLI and HTTP API show as is."""


class FaceRestoreError(Exception):
    """Base class: an expected failure with a message fit for the user (no traceback needed)."""


class ImageError(FaceRestoreError):
    """The input cannot be read as an image (corrupt, truncated, unsupported, too large)."""


class ImageTooLargeError(ImageError):
    """The image declares more pixels than the configured limit (a decompression bomb, or just too big)."""


class ModelError(FaceRestoreError):
    """A model is missing, fails its checksum, or does not fit its declared contract."""


class OptionError(FaceRestoreError):
    """An option value is out of range or unknown."""
