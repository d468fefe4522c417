"""Read one environment's settings from files: ``settings/<env>.toml``, ``.env``, the manifest.

No side effects: nothing is written, ``os.environ`` is not changed (``.env`` values are read
into a private mapping; variables already set in the process win, as with
``load_dotenv(override=False)``), no network request is made, Prefect is not imported.

``settings/<env>.toml`` may use ``${NAME}`` (required) and ``${NAME:-default}`` in any string;
a missing variable is an error that names it and the field that needs it. A top-level
``manifest = "path"`` (relative to the project root) takes chain id, RPC URL, multicall, tokens,
venues, pools and the two wallet addresses from the dev chain manifest; the file then must not
repeat them.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError

from dexpilot.chain.manifest import DevnetManifest
from dexpilot.config import ENVIRONMENTS, AppConfig, FieldError
from dexpilot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_DIRNAME = "settings"
DOTENV_NAME = ".env"

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_HEX = re.compile(r"(?<![0-9a-fA-F])(0x)?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LoadedEnvironment:
    """An environment's validated config plus where it came from (for summaries)."""

    env: str
    config: AppConfig
    root: Path
    settings_file: Path
    dotenv_file: Path | None
    manifest_file: Path | None = None
    manifest_fingerprint: str | None = None
    variables: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def sources(self) -> list[str]:
        out = [_rel(self.settings_file, self.root)]
        if self.dotenv_file is not None:
            out.append(_rel(self.dotenv_file, self.root))
        if self.manifest_file is not None:
            fp = f" (fingerprint {self.manifest_fingerprint})" if self.manifest_fingerprint else ""
            out.append(f"manifest {_rel(self.manifest_file, self.root)}{fp}")
        return out


def project_root(root: Path | str | None = None) -> Path:
    return Path(root).resolve() if root is not None else PROJECT_ROOT


def check_env_name(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {env!r}: known environments are {', '.join(ENVIRONMENTS)}"
        )
    return env


def read_environ(root: Path | str | None = None) -> dict[str, str]:
    """Variables as the settings see them: ``<root>/.env`` overlaid by the process environment."""
    values: dict[str, str] = {}
    dotenv = project_root(root) / DOTENV_NAME
    if dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ)
    return values


def load_config(env: str, *, root: Path | str | None = None) -> AppConfig:
    """Validated ``AppConfig`` of ``env`` from the files (and ``.env``); raises ``ConfigError``."""
    return read_environment(env, root=root).config


def read_environment(env: str, *, root: Path | str | None = None) -> LoadedEnvironment:
    check_env_name(env)
    base = project_root(root)
    path = base / SETTINGS_DIRNAME / f"{env}.toml"
    shown = _rel(path, base)
    if not path.is_file():
        raise ConfigError(f"settings file {path} for environment {env!r} not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None

    environ = read_environ(base)
    dotenv = base / DOTENV_NAME
    origins: dict[str, str] = {}
    used: set[str] = set()
    problems: list[str] = []
    data = _substitute(raw, "", environ, origins, used, problems)
    if problems:
        raise ConfigError(_report(env, shown, problems, hint="set them in the environment or in "
                                  f"{_rel(dotenv, base)} (see .env.example)"))

    file_env = data.pop("env", env)
    if file_env != env:
        raise ConfigError(f"{shown}: env: says {file_env!r} but the file is for {env!r}")
    data["env"] = env
    for key in list(origins):
        origins[key] = f"{shown}, from ${{{origins[key]}}}"

    manifest_file: Path | None = None
    fingerprint: str | None = None
    manifest_ref = data.pop("manifest", None)
    if manifest_ref is not None:
        if not isinstance(manifest_ref, str) or not manifest_ref.strip():
            raise ConfigError(f"{shown}: manifest: must be a path to the dev chain manifest")
        manifest_file = Path(manifest_ref)
        if not manifest_file.is_absolute():
            manifest_file = base / manifest_file
        manifest = _read_manifest(manifest_file)
        fingerprint = manifest.fingerprint
        conflicts = _merge_manifest(data, manifest, origins, f"manifest {manifest_file}")
        if conflicts:
            raise ConfigError(_report(env, shown, [
                f"{c}: set by the dev chain manifest {manifest_file}; remove it from {shown}"
                for c in conflicts
            ]))

    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _report(env, shown, describe_validation_error(exc, origins=origins, data=data))
        ) from None

    return LoadedEnvironment(
        env=env,
        config=config,
        root=base,
        settings_file=path,
        dotenv_file=dotenv if dotenv.is_file() else None,
        manifest_file=manifest_file,
        manifest_fingerprint=fingerprint,
        variables=tuple(sorted(used)),
        warnings=tuple(_warnings(config)),
    )


# -- ${VAR} substitution -----------------------------------------------------------------------
def _substitute(
    value: Any,
    path: str,
    environ: Mapping[str, str],
    origins: dict[str, str],
    used: set[str],
    problems: list[str],
) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, f"{path}.{k}" if path else k, environ, origins, used, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, f"{path}[{i}]", environ, origins, used, problems)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        used.add(name)
        origins.setdefault(path, name)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    return _VAR.sub(repl, value)


# -- the dev chain manifest ----------------------------------------------------------------------
def _read_manifest(path: Path) -> DevnetManifest:
    if not path.is_file():
        raise ConfigError(
            f"dev chain manifest {path} not found: start the dev chain with `dexpilot devnet up`"
            " (or point DEXPILOT_MANIFEST at a manifest for the test environment)"
        )
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"dev chain manifest {path} is not JSON: {exc}") from None
    try:
        return DevnetManifest.model_validate(raw)
    except ValidationError as exc:
        lines = describe_validation_error(exc, origins={}, data=raw)
        raise ConfigError(
            f"dev chain manifest {path} is invalid:\n" + "\n".join(f"  - {x}" for x in lines)
        ) from None


def _merge_manifest(
    data: dict[str, Any], manifest: DevnetManifest, origins: dict[str, str], label: str
) -> list[str]:
    from_manifest: dict[str, Any] = {
        "chain": {
            "chain_id": manifest.chain_id,
            "rpc_urls": [manifest.rpc_url],
            "multicall": manifest.multicall,
            "weth": manifest.weth,
        },
        "tokens": [t.model_dump(mode="json") for t in manifest.tokens],
        "venues": [v.model_dump(mode="json") for v in manifest.venues],
        "pools": [p.model_dump(mode="json") for p in manifest.pools],
        "wallets": {"hot": manifest.hot_wallet, "cold": manifest.cold_wallet},
    }
    conflicts: list[str] = []
    for section, value in from_manifest.items():
        if isinstance(value, dict):
            mine = data.setdefault(section, {})
            if not isinstance(mine, dict):
                conflicts.append(section)
                continue
            for key, v in value.items():
                if key in mine:
                    conflicts.append(f"{section}.{key}")
                mine[key] = v
                origins[f"{section}.{key}"] = label
        else:
            if section in data:
                conflicts.append(section)
            data[section] = value
            origins[section] = label
    return conflicts


# -- messages -------------------------------------------------------------------------------------
def describe_validation_error(
    exc: ValidationError, *, origins: Mapping[str, str], data: Any = None
) -> list[str]:
    """One line per problem: ``field.path: reason [where the value came from]``."""
    lines: list[str] = []
    for err in exc.errors():
        loc = _render_loc(err["loc"])
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            path = f"{loc}.{ctx_error.field}" if loc else ctx_error.field
            reason = ctx_error.reason
        else:
            path = loc or "(top level)"
            reason = _reason(err)
        hint = _item_hint(err["loc"], data)
        origin = _origin(path, origins)
        line = f"{path}: {reason}"
        if hint:
            line += f" [{hint}]"
        if origin:
            line += f" (value from {origin})"
        if line not in lines:
            lines.append(redact_secrets(line))
    return lines


def redact_secrets(text: str) -> str:
    """Replace anything shaped like a 32-byte hex private key."""
    return _SECRET_HEX.sub("<redacted 32-byte hex>", text)


def _reason(err: Any) -> str:
    kind, msg, value = err["type"], str(err["msg"]), err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (a typo, or a setting in the wrong section?)"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value|Assertion) error, ", "", msg)
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 50):
        return f"{msg} (got {value!r})"
    return msg


def _render_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        # other strings are pydantic's union/validator tags: not part of the field path
    return out


def _item_hint(loc: Iterable[int | str], data: Any) -> str | None:
    """``token 'USDC'`` for an error under ``tokens[1]``: indexes alone are hard to find."""
    node, hint = data, None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(part, int) and isinstance(node, dict):
            for key in ("symbol", "name", "address"):
                if isinstance(node.get(key), str):
                    hint = f"{key} {node[key]!r}"
                    break
    return hint


def _origin(path: str, origins: Mapping[str, str]) -> str | None:
    best: str | None = None
    for key in origins:
        if (path == key or path.startswith((key + ".", key + "["))) and (
            best is None or len(key) > len(best)
        ):
            best = key
    return origins[best] if best is not None else None


def _report(env: str, shown: str, problems: Sequence[str], hint: str | None = None) -> str:
    head = f"settings for environment {env!r} ({shown}) are invalid:"
    body = "\n".join(f"  - {redact_secrets(p)}" for p in problems)
    return f"{head}\n{body}" + (f"\n  {hint}" if hint else "")


def _warnings(config: AppConfig) -> list[str]:
    out: list[str] = []
    if re.match(r"^postgresql(\+psycopg)?://[^/@]*:[^/@]*@", config.ledger.url):
        out.append(
            "ledger.url contains a password: it would be stored in the Prefect block in plain "
            "text; put it in PGPASSWORD or ~/.pgpass instead"
        )
    if config.env == "prod" and config.strategy.mode == "paper":
        out.append("strategy.mode is 'paper': prod will not send transactions")
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)
