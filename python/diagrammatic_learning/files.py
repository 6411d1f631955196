"""Reading and writing files safely, for every reader and writer of the library (SPEC §1, §8).

Reading: only regular files (a FIFO, ``/dev/zero``, a socket or a folder is refused before a byte is
read, without blocking), never more bytes than a cap, nor more than the file had when it was opened.
Writing: atomically, through a temporary file in the target's folder and a rename, keeping an existing
target's permission bits, writing through a symlink to the file it points to, fsyncing the file and
its folder, and removing the temporary file on any failure (SIGTERM included, where the CLI turns it
into an exception). On Linux the temporary file has no name until it is complete (``O_TMPFILE``), so a
process killed outright leaves none behind either.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

# SPEC §1: a diagram document is at most this many bytes.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class UnreadableFile(Exception):
    """A path that cannot be read safely: missing, not a regular file, too large, or an OS error. The message says which."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


class RegularFile:
    """An open regular file, refused at open if it is anything else; reads never run past ``size``.

    ``size`` is the file's length when opened: a file that grows meanwhile is not read further.
    Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, limit: int | None = None):
        self.path = Path(path)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            self.fd = os.open(self.path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
        except FileNotFoundError:
            raise UnreadableFile(f"no such file: {self.path}", missing=True) from None
        except OSError as e:
            raise UnreadableFile(f"cannot read {self.path}: {e.strerror or e}") from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnreadableFile(f"{self.path} is {_kind(st.st_mode)}; only regular files are read")
            if limit is not None and st.st_size > limit:
                raise UnreadableFile(f"{self.path} has {st.st_size} bytes, more than the {limit} bytes allowed")
        except BaseException:
            os.close(self.fd)
            raise
        self.size = st.st_size
        self.pos = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position, never past ``size``; fewer only if the file shrank."""
        n = max(0, min(n, self.size - self.pos))
        chunks, left = [], n
        try:
            while left > 0:
                chunk = os.read(self.fd, min(left, 1 << 24))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as e:
            raise UnreadableFile(f"cannot read {self.path}: {e.strerror or e}") from None
        data = b"".join(chunks)
        self.pos += len(data)
        return data

    def read_into(self, buffer: bytearray) -> int:
        """Fill ``buffer`` from the current position (never past ``size``); the number of bytes read."""
        view, done = memoryview(buffer), 0
        want = min(len(buffer), self.size - self.pos)
        try:
            while done < want:
                if hasattr(os, "readv"):
                    got = os.readv(self.fd, [view[done:want]])
                else:  # Windows: read and copy
                    chunk = os.read(self.fd, min(want - done, 1 << 24))
                    view[done:done + len(chunk)] = chunk
                    got = len(chunk)
                if got == 0:
                    break
                done += got
        except OSError as e:
            raise UnreadableFile(f"cannot read {self.path}: {e.strerror or e}") from None
        self.pos += done
        return done

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "RegularFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``UnreadableFile`` otherwise."""
    with RegularFile(path, limit) as f:
        return f.read(f.size)


def read_text(path: str | os.PathLike, limit: int | None = MAX_DOCUMENT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; ``UnreadableFile`` otherwise."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableFile(f"{path} is not UTF-8 text: {e}") from None


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` should replace: ``path`` itself, or the file a symlink chain leads to.

    ``FileNotFoundError`` if its folder does not exist (folders are never created),
    ``IsADirectoryError`` if it is a folder.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise IsADirectoryError(21, "cannot write a file over a folder", str(path))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(2, f"cannot write {path}: no such folder (folders are not created)", str(folder))
    return path


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file.

    An existing target keeps its permission bits (a 0600 file stays 0600); a new one gets the
    mode a plain ``open()`` would give (0666 less the umask). A symlink is written through: the
    file it points to is replaced and the link stays. The file and its folder are fsynced. The
    temporary file is removed on any exception, including ``KeyboardInterrupt`` and the
    ``SystemExit`` the CLI raises on SIGTERM. On Linux the bytes go first into an unnamed file
    (``O_TMPFILE``), which gets a name only once complete and synced, just before the rename:
    a process killed outright (SIGKILL, a crash) while writing leaves nothing behind.
    """
    path = write_target(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp = _write_unnamed(folder, path.name, data, mode)
    try:
        if tmp is None:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, mode)
            except (AttributeError, OSError):  # no fchmod (Windows)
                os.chmod(tmp, mode)
            _write_all(fd, data)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    _fsync_folder(folder)


def _write_all(fd: int, data: bytes) -> None:
    """Write, flush and fsync ``data`` to ``fd``, then close it (closed whatever happens)."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_unnamed(folder: Path, name: str, data: bytes, mode: int) -> str | None:
    """``data`` written and synced in a file of ``folder`` with no name until then (Linux ``O_TMPFILE``),
    then linked under a fresh temporary name, which is returned; None where there are no unnamed files
    or they cannot be named (another system, file system or kernel, or no /proc): nothing is left then."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, flag | os.O_WRONLY, 0o600)
    except OSError:  # EOPNOTSUPP, EISDIR, EINVAL: no unnamed files here
        return None
    try:
        os.fchmod(fd, mode)
        _write_all(os.dup(fd), data)  # the copy is closed; ``fd`` stays open to name the file
        try:
            return _name_unnamed(fd, folder, name)
        except OSError as e:
            if isinstance(e, FileExistsError):
                raise
            return None  # linking refused (a /proc without it, a file system without linkat): write by name
    finally:
        os.close(fd)


def _name_unnamed(fd: int, folder: Path, name: str) -> str:
    """Give the unnamed file ``fd`` a fresh temporary name in ``folder``.

    ``linkat(AT_SYMLINK_FOLLOW)`` on ``/proc/self/fd/<fd>``, the way open(2) documents for ``O_TMPFILE``;
    Python calls ``linkat`` only when given a directory descriptor (else plain ``link``, which would link
    the /proc symlink itself), so the folder's is passed (the absolute source path ignores it).
    """
    folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for _ in range(100):
            tmp = str(folder / f".{name}.{os.urandom(6).hex()}.tmp")
            try:
                os.link(f"/proc/self/fd/{fd}", tmp, src_dir_fd=folder_fd, follow_symlinks=True)
                return tmp
            except FileExistsError:
                continue
    finally:
        os.close(folder_fd)
    raise FileExistsError(f"no free temporary name for {name!r} in {folder}")
