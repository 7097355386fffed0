"""Secret references: `{ file = "path" }` or `{ env = "NAME" }`, never the secret itself in the file.

A relative `file` is read from the configuration file's folder, wherever the broker was started. An error
names the reference (the variable, the path), never what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.config.problems import invalid
from broker.errors import ConfigurationError

REFERENCE_FORM = 'must be a reference: { file = "path" } or { env = "NAME" }'


class SecretRef(BaseModel):
    """Where a secret is: exactly one of a file (relative: to the configuration's folder) or a variable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    file: str | None = Field(default=None, min_length=1)
    env: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        # Checked before the fields, so an inline secret (`key = "..."`) gets this message, not a type error.
        if not isinstance(data, Mapping) or len(data) != 1 or not {"file", "env"} >= set(data):
            raise invalid(REFERENCE_FORM)
        return data


class FileRef(BaseModel):
    """A file that is not secret but is read the same way (`jwks = { file = "cluster-jwks.json" }`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    file: str = Field(min_length=1)


class SecretReader:
    """Resolves references against one folder and one environment."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self._base_dir = base_dir
        self._environ = environ

    def path(self, name: str) -> Path:
        file = Path(name)
        return file if file.is_absolute() else self._base_dir / file

    def read(self, ref: SecretRef | FileRef, path: str) -> str:
        """The referenced text; ConfigurationError(path) naming the variable or file when it is not there."""
        env = getattr(ref, "env", None)
        if env is not None:
            value = self._environ.get(env)
            if not value:
                raise ConfigurationError(path, f"environment variable {env!r} is not set")
            return value
        assert ref.file is not None  # SecretRef holds exactly one of the two
        file = self.path(ref.file)
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigurationError(path, f"cannot read {file} ({reason})") from None
