"""Every mistake in a configuration, collected with its dotted path, then raised as one ConfigurationError.

Pydantic's errors are translated here, once, into the broker's wording; no message carries the input value,
so a secret written where a reference belongs never reaches an error or a log.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from broker.errors import ConfigurationError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Pydantic's error types, in the words the rest of the broker's errors use.
_WORDING = {
    "missing": "missing",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


def invalid(message: str) -> PydanticCustomError:
    """The error a validator raises: `message` as the whole text (passed as context, so braces stay)."""
    return PydanticCustomError("invalid_value", "{reason}", {"reason": message})


def join(path: str, loc: Sequence[str | int]) -> str:
    """`tenants.oslo` + ("warm", 0) -> `tenants.oslo.warm[0]`."""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


class Problems:
    """The (path, message) pairs found so far; `raise_if_any` raises them all, in the order of the file."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._found: list[tuple[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self._found)

    def add(self, path: str, message: str) -> None:
        self._found.append((path, message))

    def validate(self, model: type[M], raw: object, path: str) -> M | None:
        """`raw` as `model`, or None with each of its errors recorded under `path`."""
        return self.validate_leniently(model, raw, path, retry=False)[0]

    def validate_leniently(
        self, model: type[M], raw: object, path: str, *, retry: bool = True
    ) -> tuple[M | None, frozenset[str]]:
        """`raw` as `model` with each error recorded under `path`, and the fields that failed. With `retry`,
        a table whose mistakes are all in optional fields is validated again without them, so the rules
        that relate its other values still run (they skip the failed fields, which hold defaults)."""
        try:
            return model.model_validate(raw), frozenset()
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
        for error in errors:
            self.add(join(path, error["loc"]), _message(error, model))
        failed = frozenset(str(error["loc"][0]) for error in errors if error["loc"])
        if not retry or not isinstance(raw, Mapping) or any(not error["loc"] for error in errors):
            return None, failed
        try:
            rest = model.model_validate({key: value for key, value in raw.items() if key not in failed})
        except ValidationError:
            return None, failed
        return rest, failed

    def attempt(self, build: Callable[[], T]) -> T | None:
        """`build()`, or None with the ConfigurationError it raised recorded (one value, one mistake)."""
        try:
            return build()
        except ConfigurationError as exc:
            for path, message in exc.problems:
                self.add(path, message)
            return None

    def raise_if_any(self) -> None:
        if not self._found:
            return
        # A stable sort: mistakes found at the same place keep the order the rules ran in.
        ordered = sorted(self._found, key=lambda found: _position(self._raw, found[0]))
        first_path, first_message = ordered[0]
        raise ConfigurationError(first_path, first_message, problems=ordered)


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "invalid_value":
        return str(context["reason"])
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    if kind == "extra_forbidden":
        allowed = _fields_at(model, error["loc"][:-1])
        return f"unknown field (allowed: {', '.join(allowed)})" if allowed else "unknown field"
    if kind == "literal_error":
        return f"must be {context['expected']}"
    if kind == "too_short" and context.get("min_length") == 1:
        return "needs at least one entry"
    return _WORDING.get(kind, error["msg"])


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found at `loc` inside `model` (empty when `loc` is no model)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or not isinstance(part, str):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _unwrap_optional(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _position(raw: Any, path: str) -> tuple[int, ...]:
    """Where `path` is in the file (tomllib keeps the order of the file); unknown parts sort after."""
    position: list[int] = []
    for part in _parts(path):
        if isinstance(raw, Mapping) and isinstance(part, str) and part in raw:
            position.append(list(raw).index(part))
            raw = raw[part]
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            position.append(part)
            raw = raw[part]
        else:
            position.append(len(raw) if isinstance(raw, Mapping | list) else 0)
            break
    return tuple(position)


def _parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for dotted in path.split("."):
        # Only trailing `[digits]` are list indices; a quoted TOML name may hold brackets of its own.
        match = _INDEXED.fullmatch(dotted)
        assert match is not None  # the pattern matches any text
        parts.append(match.group(1))
        parts.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    return parts


_INDEXED = re.compile(r"(.*?)((?:\[\d+\])*)", re.DOTALL)
