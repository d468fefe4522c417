"""A backup's manifest: the JSON file next to each backup file that says what it holds.

The manifest is written last (atomically): a backup file without one is an unfinished backup
and is never listed, verified, restored or pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dexpilot.backups.errors import BackupCorrupted, BackupNotFound

MANIFEST_FORMAT = 1
PREFIX = "ledger-"
MANIFEST_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
EXTENSIONS: dict[str, str] = {"sqlite": ".sqlite", "postgresql": ".pgdump"}
_CHUNK = 1 << 20

Backend = Literal["sqlite", "postgresql"]


class BackupManifest(BaseModel):
    """What one backup holds, as recorded when it was taken (one consistent snapshot)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = MANIFEST_FORMAT
    id: str
    file: str = Field(description="the backup file's name, in the manifest's directory")
    backend: Backend
    created_at: datetime
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    alembic_revision: str | None
    source_url: str = Field(description="the ledger URL, redacted (no password)")
    row_counts: dict[str, int]
    table_digests: dict[str, str] = Field(
        default_factory=dict,
        description="per table: sha256 over its rows, independent of row order",
    )
    tool: str = Field(default="", description="what wrote the file (sqlite / pg_dump version)")

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("created_at must carry a time zone")
        return value.astimezone(UTC)

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def backup_id(created_at: datetime) -> str:
    """``ledger-20250102T030405.123456Z``: UTC, sortable by name, unique to the microsecond."""
    utc = created_at.astimezone(UTC)
    return f"{PREFIX}{utc.strftime('%Y%m%dT%H%M%S')}.{utc.microsecond:06d}Z"


def manifest_path(directory: Path, backup: str) -> Path:
    return directory / f"{backup}{MANIFEST_SUFFIX}"


def read_manifest(path: Path) -> BackupManifest:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackupNotFound(f"no backup manifest at {path}") from None
    try:
        return BackupManifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise BackupCorrupted(
            f"backup manifest {path} is not a valid manifest ({where}: {first['msg']})"
        ) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` so that it exists either complete or not at all, durably."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_file(manifest: BackupManifest, path: Path) -> None:
    """Raise ``BackupCorrupted`` unless ``path`` has the manifest's size and sha256."""
    if not path.is_file():
        raise BackupCorrupted(f"backup {manifest.id}: its file {path} is missing")
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise BackupCorrupted(
            f"backup {manifest.id} is corrupted: {path.name} has {size} bytes, the manifest "
            f"says {manifest.size_bytes}; nothing was changed"
        )
    actual = sha256_file(path)
    if actual != manifest.sha256:
        raise BackupCorrupted(
            f"backup {manifest.id} is corrupted: sha256 of {path.name} is {actual}, the "
            f"manifest says {manifest.sha256}; nothing was changed"
        )
