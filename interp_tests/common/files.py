"""Paths checked for what they are before they are used, and files written so that nothing is ever half-written
or replaced by accident. Standard library only; no pytest here.

Inputs (`checked_file`, `checked_dir`): a path the harness reads must be a regular file (or a directory
where a directory is meant) within a size limit; anything else (a FIFO, which would block the run, a device,
a socket, a name with a NUL byte, a name too long, a loop of links) is one `PathError` line naming the path.

Outputs (`write_output`): a new path or a regular file (also behind a symbolic link, which stays a link) is
written atomically: a temporary file beside it, fsync, then `os.replace`. A character device or a FIFO with
a reader (`/dev/stdout`, `/dev/null`) is written to directly, never replaced; `-` is standard output; a
directory, a socket, a block device or a FIFO nobody reads is refused. `AtomicSet` writes several files as a
set: every temporary first, then the renames, with Ctrl-C held back until the last rename.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .echo import echo
from .errors import InterpTestsError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX


class PathError(InterpTestsError):
    """A path that is not what the harness needs (one line that names it)."""


def kind_of(mode: int) -> str:
    """What a stat mode is, in words."""
    for test, name in (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a path's text cannot name a file (a NUL byte, too long, a name past 255 bytes), or None."""
    text = os.fspath(path)
    if "\0" in text:
        return "contains a NUL byte"
    if len(text) > MAX_PATH_CHARS:
        return f"is {len(text):,} characters long, over the {MAX_PATH_CHARS:,} a path may have"
    for part in text.split(os.sep):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            return f"has a name of {len(part.encode('utf-8', 'surrogateescape')):,} bytes, over the {MAX_NAME_BYTES} a file name may have"
    return None


def _stat(path: str | os.PathLike[str], what: str) -> os.stat_result:
    problem = path_problem(path)
    if problem:
        raise PathError(f"{what} {echo(os.fspath(path))} {problem}")
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise PathError(f"{what} {os.fspath(path)} does not exist") from None
    except PermissionError:
        raise PathError(f"{what} {os.fspath(path)} cannot be read: permission denied") from None
    except OSError as exc:
        raise PathError(f"{what} {os.fspath(path)} cannot be used: {exc.strerror or exc}") from None


def checked_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> Path:
    """`path` as a Path, after checking that it is a regular file of at most `max_bytes`; else PathError.
    A symbolic link is followed (its target is what is checked). Never opens the file: a FIFO cannot block."""
    st = _stat(path, what)
    if not stat.S_ISREG(st.st_mode):
        raise PathError(f"{what} {os.fspath(path)} is {kind_of(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise PathError(f"{what} {os.fspath(path)} is {st.st_size:,} bytes, over the limit of {max_bytes:,}")
    return Path(path)


def checked_dir(path: str | os.PathLike[str], what: str) -> Path:
    st = _stat(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{what} {os.fspath(path)} is {kind_of(st.st_mode)}, not a directory")
    return Path(path)


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """True for a regular file (following links); False for anything else, a bad name included."""
    if path_problem(path):
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# ----------------------------------------------------------------------------- writing
def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _temporary(path: Path, text: str) -> str:
    """The text in a fsync'ed temporary file beside `path`, with `path`'s permission bits; returns its name."""
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def output_target(path: Path, what: str = "output") -> tuple[Path, bool]:
    """(where to write, atomically?) for an output path: a new path or a regular file (a link's target) is
    replaced atomically; a character device or a FIFO is written directly; anything else is a PathError."""
    problem = path_problem(path)
    if problem:
        raise PathError(f"{what} {echo(str(path))} {problem}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():  # a dangling link: write where it points
            return Path(os.path.realpath(path)), True
        return path, True
    except OSError as exc:
        raise PathError(f"{what} {path} cannot be used: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode):
        return Path(os.path.realpath(path)), True
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return path, False
    raise PathError(f"{what} {path} is {kind_of(st.st_mode)}: give a file name (it is never replaced)")


def _write_directly(path: Path, text: str) -> None:
    """Write to a character device or a FIFO without replacing it; a FIFO nobody reads fails at once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise PathError(f"{path} is a FIFO that no process reads: start its reader first") from None
        raise
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_output(path: Path | str, text: str, what: str = "output") -> str:
    """Write `text` to `path` (see the module's docstring); returns where it went, in words. Raises PathError
    for a path that cannot be written to, OSError for a write that fails (a full disk, say)."""
    if str(path) == "-":
        sys.stdout.write("\n" + text)  # on a line of its own, after whatever the terminal shows
        sys.stdout.flush()
        return "standard output"
    target, atomic = output_target(Path(path), what)
    if not atomic:
        _write_directly(target, text)
        return str(path)
    tmp = _temporary(target, text)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to the regular file (or new path) `path` at once; an interrupted write leaves the old file
    as it was and no temporary file behind. Anything but a regular file or a new path is a PathError."""
    target, atomic = output_target(path, "file")
    if not atomic:
        raise PathError(f"file {path} is not a regular file: it is never replaced")
    tmp = _temporary(target, text)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (in the main thread; elsewhere
    nothing is held). Their handlers are swapped for ones that only note the signal: a thread mask would not
    do, since any thread (torch's among them) may receive a process-directed signal."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(arrived):
            os.kill(os.getpid(), signum)  # delivered now, to the handlers that were there before


@dataclass
class AtomicSet:
    """Several files replaced as a set: `add` writes each text to a temporary file beside its target; `commit`
    renames them all with SIGINT and SIGTERM held, so that an interrupt leaves every file old or every file
    new; `discard` removes the temporaries. A rename that fails part way (a disk error) raises
    `PartialCommit`, which names the files already replaced and those left as they were."""

    pending: list[tuple[str, Path]] = field(default_factory=list)

    def add(self, path: Path, text: str) -> None:
        target, atomic = output_target(path, "file")
        if not atomic:
            raise PathError(f"file {path} is not a regular file: it is never replaced")
        self.pending.append((_temporary(target, text), target))

    def discard(self) -> None:
        for tmp, _ in self.pending:
            Path(tmp).unlink(missing_ok=True)
        self.pending.clear()

    def commit(self) -> list[Path]:
        done: list[Path] = []
        with signals_held():
            try:
                for tmp, target in self.pending:
                    os.replace(tmp, target)
                    done.append(target)
            except OSError as exc:
                left = [target for _, target in self.pending[len(done):]]
                self.discard()
                raise PartialCommit(done, left, exc) from None
        self.pending.clear()
        return done


class PartialCommit(InterpTestsError):
    def __init__(self, done: list[Path], left: list[Path], exc: OSError) -> None:
        self.done, self.left = done, left
        super().__init__(
            f"{exc.strerror or exc} while replacing {left[0] if left else '?'}: {len(done)} files are new "
            f"({', '.join(map(str, done)) or 'none'}), {len(left)} are as they were ({', '.join(map(str, left))})"
        )
