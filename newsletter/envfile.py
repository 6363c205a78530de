"""Where the settings file is, reading it strictly, and writing one (`newsletter init`).

One file serves every process: `newsletter`, `newsletter serve`, the Celery worker and beat, and
systemd's `EnvironmentFile=`. So values are written in the subset both python-dotenv (which
pydantic-settings uses) and systemd read alike: `KEY="VALUE"` lines, `\\` and `"` escaped, no `$`,
backquote or control character in a value.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dotenv.parser import parse_stream

from newsletter.errors import ConfigError

ENV_FILE_VARIABLE = "NEWSLETTER_ENV_FILE"
LOCAL_ENV_FILE = Path(".env")
SYSTEM_ENV_FILE = Path("/etc/newsletter/newsletter.env")
_FORBIDDEN = set("$`") | {chr(c) for c in range(32)} | {"\x7f"}


def find_env_file() -> Path | None:
    """The settings file this process reads: $NEWSLETTER_ENV_FILE (which must exist), else
    ./.env if present, else /etc/newsletter/newsletter.env if present, else none (environment
    only). Real environment variables override the file's values."""
    explicit = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_FILE_VARIABLE} names {path}, which does not exist or is not a file.")
        return path.absolute()
    for candidate in (LOCAL_ENV_FILE, SYSTEM_ENV_FILE):
        if _is_file(candidate):
            return candidate.absolute()
    return None


def _is_file(path: Path) -> bool:
    """Whether `path` is a file; False where it cannot be looked at. `Path.is_file` raises on
    EACCES: run as the service user from root's home (`cd /root && sudo -u newsletter
    newsletter stats`), every command ended in "Permission denied: '.env'" and never tried
    /etc/newsletter/newsletter.env."""
    try:
        return path.is_file()
    except OSError:
        return False


def describe_source(path: Path | None) -> str:
    """For the start-up line: which file was read, and why that one."""
    if path is None:
        return "no settings file (environment variables only)"
    why = f"${ENV_FILE_VARIABLE}" if os.environ.get(ENV_FILE_VARIABLE, "").strip() else "found"
    return f"{path} ({why})"


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE pairs of `path`; ConfigError (one line, no value shown: values are secrets)
    if it cannot be read or a line is not KEY=VALUE, a comment or blank."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read the settings file {path}: it is not UTF-8 text ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror or exc}") from exc
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error or (binding.key is not None and binding.value is None):
            line = binding.original.line + binding.original.string.count(
                "\n", 0, _lead(binding.original.string)
            )
            raise ConfigError(
                f"the settings file {path}, line {line}: not a KEY=VALUE line "
                '(write NEWSLETTER_NAME=value, or NEWSLETTER_NAME="value with spaces"; # starts a comment)'
            )
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def _lead(string: str) -> int:
    """How many characters of blank lines python-dotenv glued in front of a statement."""
    return len(string) - len(string.lstrip("\n"))


def quote(key: str, value: str) -> str:
    """`value` as one double-quoted line that python-dotenv and systemd read back identically."""
    bad = sorted({c for c in value if c in _FORBIDDEN})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ConfigError(f"{key} cannot contain {shown} (a settings file line cannot hold it safely).")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


def env_file_text(values: Mapping[str, str], header: str, hints: str = "") -> str:
    """The whole file: a comment header, one quoted line per value, then commented hints."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [quote(key, value) for key, value in values.items()]
    return "\n".join(lines) + "\n" + hints


def write_private_file(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path` with mode 0600, creating its folder; never overwrite an existing
    file unless `force`. Atomic: a reader sees the old file or the whole new one."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; not overwriting it (pass --force to replace it).")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created `path` meanwhile
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; not overwriting it (pass --force to replace it).") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
