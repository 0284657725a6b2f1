"""The rule for the names of aliases and lenses (they appear in URLs)."""

from __future__ import annotations

import re
from typing import Any

from bfx import errors

__all__ = ["MAX_NAME", "NAME_PATTERN", "check_name"]

#: The longest name (characters).
MAX_NAME = 64
#: A letter or digit, then letters, digits, ``.``, ``_`` or ``-`` (ASCII only).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: Any, what: str) -> str:
    """``name`` when it follows the rule; else ValidationError (422) naming ``what``."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise errors.ValidationError(
            f"{what} name must be 1-{MAX_NAME} ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            {"field": "name", "pattern": NAME_PATTERN},
        )
    return name
