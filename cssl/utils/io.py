"""Atomic file writes: a crash mid-write never leaves a half-written file behind.

A write goes to a temporary file beside the target (``.NAME.XXXXXXXX.tmp``), is synced,
given the permissions of the process umask, and renamed over the target. A failure
leaves the previous version of the target untouched and removes the temporary file;
a full disk or a folder that cannot be written is reported as an
:class:`~cssl.utils.errors.OutputError` naming the file (and, for a full disk, the space
needed and free). A process killed mid-write can leave a temporary file behind:
:func:`remove_stale_temporaries` clears them when a job starts.

One rule for the outputs of every command (:func:`check_outputs`): an output that is also an
input is refused; an existing output is refused unless the user forces it, and is then replaced
whole (a folder through :func:`replace_folder`: written beside, then swapped in).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cssl.utils.errors import OutputError

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)
_HELD: dict[Path, object] = {}
"""Lock files this process holds (open and locked until it ends)."""


def atomic_write(path: str | Path, write: Callable[[Path], object], size_hint: int | None = None) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it over ``path``.

    ``size_hint`` (bytes, when known) goes into the message should the disk be full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        _reraise(err, path, size_hint)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        _reraise(err, path, size_hint)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes UTF-8 text atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), size_hint=len(text.encode()))


def atomic_write_json(path: str | Path, data: object) -> None:
    """Writes ``data`` as indented JSON (one trailing newline) atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Writes UTF-8 text, one item per line, atomically."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def check_writable(folder: str | Path) -> None:
    """Creates ``folder`` if needed and proves a file can be written there (before hours of work)."""
    probe = Path(folder) / ".write-test"
    atomic_write(probe, lambda tmp: tmp.write_bytes(b"ok"))
    probe.unlink(missing_ok=True)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None] = (),
                  force: bool = False, option: str = "--force") -> None:
    """Refuses, before any work, an output that is also an input (always: writing it would destroy what is
    read) and an output that exists already (unless ``force``; ``option`` is how the user forces it)."""
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        clash = next((i for i in ins if _same(out, i)), None)
        if clash is not None:
            raise OutputError(f"{out}: this output is also an input ({clash}); writing it would destroy what is "
                              "read: choose another output path")
        if out.exists() and not force:
            kind = "folder" if out.is_dir() else "file"
            raise OutputError(f"{out}: the {kind} exists; choose another path or give {option} to replace it")


def replace_folder(out: str | Path, write: Callable[[Path], object]) -> object:
    """Writes a folder whole: ``write(tmp)`` fills a new folder beside ``out``, which then takes the place
    of ``out`` (whose old contents go, none left beside the new). A failure leaves ``out`` as it was.
    Returns what ``write`` returns (paths in it name the temporary folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        result = write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    os.chmod(out, 0o777 & ~_umask())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return result


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes temporary files that an interrupted atomic write left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and _TEMPORARY.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reraise(err: Exception, path: Path, size_hint: int | None) -> None:
    clear = _output_error(err, path, size_hint)
    if clear is err:
        raise err
    raise clear from err


def _output_error(err: Exception, path: Path, size_hint: int | None) -> Exception:
    """A clear :class:`OutputError` for a full disk or an unwritable folder; other errors unchanged."""
    code = getattr(err, "errno", None)
    folder = path.parent if path.parent.exists() else next((p for p in path.parents if p.exists()), path.parent)
    if code in _NO_WRITE:
        return OutputError(f"cannot write to {path.parent} ({os.strerror(code)}): choose a folder you can write to "
                           "(out_dir=... for training runs)")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = code in _NO_SPACE or (isinstance(err, RuntimeError) and free is not None
                                 and free < max(size_hint or 0, 1 << 20))
    if full:
        need = f"about {size_hint / 2**20:.1f} MB needed, " if size_hint else ""
        have = f"{free / 2**20:.1f} MB free" if free is not None else "free space unknown"
        return OutputError(f"no space left on device while writing {path} ({need}{have}); "
                           "free some space or choose another folder. The previous version of the file is kept.")
    return err


def hold_lock(lock: str | Path, what: str) -> None:
    """Takes ``lock`` (an exclusive ``flock`` on that file, held until :func:`release_lock` or the end of the
    process) for ``what``, so that a second process writing the same outputs stops with the holder's
    process id instead of overwriting them. Taking a lock this process already holds is a no-op."""
    lock = Path(lock).resolve()
    if lock in _HELD:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise OutputError(f"{what} is in use by another process (pid {holder}, lock {lock}); wait for it to end, "
                          "or write somewhere else") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD[lock] = handle


def release_lock(lock: str | Path) -> None:
    """Lets go of a lock :func:`hold_lock` took (nothing when this process does not hold it)."""
    handle = _HELD.pop(Path(lock).resolve(), None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
