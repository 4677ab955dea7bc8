"""Which data directory a command uses when DATA_DIR is left at its default ("var", relative
to the working directory): `skyline run` records the one it owns in a small file of this
user ($XDG_STATE_HOME/skyline/instance.json, default ~/.local/state/...), so that
`skyline metrics list`, `crucible --metric`, `silence`, `user`... run from another
directory find the running instance's data instead of silently starting an empty store.

Rules (only when DATA_DIR was not set in the file, the environment or by an option):
- ./var holding Skyline's data wins: the directory `skyline run` uses when started here;
- else the directory the last `skyline run` recorded, when it still holds data;
- else a command that reads data stops with a message naming both places.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from skyline.core.errors import SkylineError
from skyline.settings import Settings
from skyline.settings.origins import DEFAULT, origin

log = logging.getLogger(__name__)

# files that show a directory holds Skyline's data: the embedded Redis' config (written at
# every start), its append-only file or snapshot, the default SQLite event store
_DATA_FILES = ("redis.conf", "appendonly.aof", "appendonlydir", "dump.rdb", "skyline.db")


class NoDataDirectory(SkylineError):
    """A command that reads Skyline's data found none."""


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "skyline" / "instance.json"


def has_data(d: Path) -> bool:
    return d.is_dir() and any((d / name).exists() for name in _DATA_FILES)


@dataclass(frozen=True)
class Recorded:
    data_dir: Path
    pid: int
    started: float

    @property
    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_record() -> Recorded | None:
    try:
        d = json.loads(state_file().read_text())
        return Recorded(Path(d["data_dir"]), int(d["pid"]), float(d["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(settings: Settings) -> None:
    """Called by `skyline run`: remember its data directory for the other commands. A
    failure to write is logged and otherwise ignored (the run does not depend on it)."""
    path = state_file()
    data = {"data_dir": str(settings.data_dir), "pid": os.getpid(), "started": time.time()}
    tmp: str | None = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".instance-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not record the data directory in %s: %s", path, e)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _uses_data_dir(settings: Settings) -> bool:
    return settings.REDIS_URL is None or settings.DATABASE_URL is None


def resolve(settings: Settings) -> Settings:
    """The settings with DATA_DIR pointing at the data a command should read: unchanged
    when DATA_DIR was set anywhere, when ./var holds data, or when nothing was recorded."""
    if origin(settings, "DATA_DIR") != DEFAULT or not _uses_data_dir(settings):
        return settings
    if has_data(settings.data_dir):
        return settings
    rec = read_record()
    if rec is None or not has_data(rec.data_dir):
        return settings
    log.debug("DATA_DIR: using %s, recorded by `skyline run` (pid %d%s)", rec.data_dir,
              rec.pid, "" if rec.running else ", stopped")
    return settings.model_copy(update={"DATA_DIR": rec.data_dir})


def require(settings: Settings) -> Settings:
    """`resolve`, then stop with a clear message when a command that reads data would
    otherwise start an empty store in a directory that holds none."""
    found = resolve(settings)
    if origin(found, "DATA_DIR") != DEFAULT or not _uses_data_dir(found):
        return found
    if has_data(found.data_dir):
        return found
    rec = read_record()
    recorded = (f"the last `skyline run` recorded {rec.data_dir}, which holds no data"
                if rec is not None else f"no `skyline run` has recorded one ({state_file()})")
    raise NoDataDirectory(
        f"no Skyline data in {found.data_dir} (DATA_DIR {found.DATA_DIR}, relative to the "
        f"working directory) and {recorded}: run this where `skyline run` runs, or set "
        "SKYLINE_DATA_DIR (or DATA_DIR in the --config file)")
