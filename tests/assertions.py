"""Assertions several test files share."""

from __future__ import annotations

from facerestore.errors import ModelError


def assert_one_clear_line(error: ModelError, *words: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), (
        "the CLI would show a chained traceback"
    )
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
