"""Where the hub keeps its files, and how a CLI finds a running hub.

`$FLOTILLA_HOME` (default `~/.local/share/flotilla`) holds the store, the token, the
address of the running hub and the chart cache. The token and the store are 0600: either
one is enough to act on every member cluster.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hub.errors import FlotillaError, HubUnavailable, InvalidInput

# A shared token guards every replica's API: no shorter than what `openssl rand -base64 16`
# gives, so that it cannot be guessed.
MIN_TOKEN = 22
START_HINT = "start one with `flotilla serve` (or set FLOTILLA_HUB and FLOTILLA_TOKEN)"


class HomeUnwritable(FlotillaError):
    """A file of the hub's home could not be written (its disk is full, or read-only)."""


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def default(cls) -> Home:
        explicit = os.environ.get("FLOTILLA_HOME")
        if explicit:
            return cls(Path(explicit))
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return cls(Path(data) / "flotilla")

    @property
    def store(self) -> Path:
        return self.root / "flotilla.db"

    @property
    def hub_file(self) -> Path:
        return self.root / "hub.json"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def temp(self) -> Path:
        return self.root / "tmp"

    @property
    def charts(self) -> Path:
        return self.root / "charts"

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.root.chmod(0o700)
            self.temp.mkdir(exist_ok=True, mode=0o700)
        except OSError as e:
            raise HomeUnwritable(f"cannot prepare {self.root}: {e.strerror or e}") from e

    def write_token(self, given: Path | None = None) -> str:
        """A fresh random token, or the one in the file `given` (replicas share one); kept
        where the CLI on this machine finds it either way."""
        import secrets  # only the hub makes one: every CLI start imports this module

        token = secrets.token_urlsafe(32) if given is None else _read_token(given)
        _write_private(self.token_file, token + "\n")
        return token

    def write_hub_file(self, url: str) -> None:
        _write_private(self.hub_file, json.dumps({"url": url, "pid": os.getpid()}) + "\n")

    def remove_hub_file(self) -> None:
        self.hub_file.unlink(missing_ok=True)

    def locate(self) -> tuple[str, str]:
        """(url, token) of the hub a CLI should talk to."""
        url, token = os.environ.get("FLOTILLA_HUB"), os.environ.get("FLOTILLA_TOKEN")
        if not url:
            try:
                url = json.loads(self.hub_file.read_text())["url"]
            except (OSError, ValueError, KeyError):
                raise HubUnavailable(f"no Flotilla hub is running; {START_HINT}") from None
        if not token:
            try:
                token = self.token_file.read_text().strip()
            except OSError:
                raise HubUnavailable(f"no hub token in {self.token_file}; {START_HINT}") from None
        return str(url).rstrip("/"), token


def _write_private(path: Path, text: str) -> None:
    """Write via a 0600 temporary file and rename, so a reader never sees half a file; one
    that cannot be written leaves no half behind and is one line, naming it."""
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HomeUnwritable(f"cannot write {path}: {e.strerror or e}") from e


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise InvalidInput(f"--token-file {path}: cannot read it ({e.strerror or e})") from None
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise InvalidInput(
            f"--token-file {path}: expected one token of at least {MIN_TOKEN} characters, "
            "without spaces (e.g. `openssl rand -base64 32`)"
        )
    return token
