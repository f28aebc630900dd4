"""The JSON types the sandboxes' answers and control APIs are typed with, so mypy checks every body.

``float`` is here only for the control APIs (fault rates, stall seconds); money is never a float.
"""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonDict: TypeAlias = dict[str, JsonValue]
