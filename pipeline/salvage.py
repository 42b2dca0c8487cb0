"""Keep what is complete of a JSON answer that was cut off (``max_tokens``, a time budget).

``complete_prefix`` cuts the text right after its last complete JSON object and closes the
containers still open, so every object in the result was written whole by the model: a
record that was being written when the output stopped is dropped, never kept half-filled.
"""

from __future__ import annotations

import json
from typing import Any


def complete_prefix(text: str) -> Any | None:
    """The parsed JSON of ``text``, or of its longest prefix that ends with a complete object;
    None when there is none."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    stack: list[str] = []
    in_string = escaped = False
    cuts: list[tuple[int, tuple[str, ...]]] = []  # (end of a complete object, containers open after it)
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            continue
        if c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]":
            if not stack:
                break
            stack.pop()
            if c == "}":
                cuts.append((i + 1, tuple(stack)))
    for end, still_open in reversed(cuts):
        closing = "".join("}" if o == "{" else "]" for o in reversed(still_open))
        try:
            return json.loads(text[:end] + closing)
        except json.JSONDecodeError:
            continue
    return None
