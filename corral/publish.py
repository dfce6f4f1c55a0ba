"""Publish a finished item from a staging area into its final place, verified
and atomic (issue 3 item 7, seed 000's transfer of finished works).

``publish(src, dest)`` copies SRC (a file or a folder) into
``DEST.partial-<id>`` beside the final place, makes it durable (fsync of a
single file; for a folder syncfs, or fsync of every file and folder), checks it
against the source (file count and bytes; sha256 when asked), then renames it
into place in one step. Readers of the final store see either nothing or the
whole item, never a half-copied one. The source is
removed only after the rename is durable, and only when asked.

A crash at any point leaves the final store as it was. The next run recovers:
a leftover ``DEST.partial-*`` is resumed (files whose size and modification
time already match the source are kept; everything is verified again), and a
replace interrupted between its two renames is rolled back.

This module knows nothing of the store or the engine; the CLI
(:mod:`corral.publish_cli`) and a pipeline step call it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from corral import errors

VERIFY_KINDS = ("count", "bytes", "sha256")
DEFAULT_VERIFY = ("count", "bytes")
PARTIAL = ".partial-"
OLD = ".old-"
CHUNK = 4 << 20
"""Bytes per copy call: small enough for a live progress bar and a short wait on the
disk in _Writeback, large enough to be cheap (4, 8 and 16 MB measured the same)."""
WORKERS = 4
"""Files copied at once. Small files are dominated by open/close/fsync latency, which threads overlap."""
SHOW_DIFFERENCES = 10
"""Differing paths named in a verification error; the rest are counted."""


class Progress(Protocol):
    """What publish reports while it copies; the CLI draws a bar from it."""

    def begin(self, name: str, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


class Entry(NamedTuple):
    """One thing inside an item: a folder, a regular file or a symbolic link.

    A named tuple, not a dataclass: a scan builds one per file, and 10,000
    frozen-dataclass inits cost more than the stat calls."""

    rel: str
    kind: str  # "dir" | "file" | "link"
    size: int
    mtime_ns: int
    mode: int
    target: str | None = None


@dataclass(frozen=True)
class Published:
    """What happened to one item."""

    src: Path
    dest: Path
    outcome: str  # "published" | "replaced" | "skipped"
    files: int = 0
    bytes: int = 0
    resumed_files: int = 0
    """Files kept from a leftover partial copy of an interrupted run."""
    source_deleted: bool = False
    note: str = ""


# -- errors ---------------------------------------------------------------------------------


def _os_error(exc: OSError, doing: str) -> errors.PublishError:
    """One line a person can act on: what could not be done, to which path, and the fix."""
    path = exc.filename or "?"
    head = f"cannot {doing} {path}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return errors.PublishError(
            f"{head}: permission denied; check the owner and mode of {path} and its folder "
            f"(uid {os.getuid()} needs read access to the source and write access to the destination folder)"
        )
    if exc.errno == errno.EROFS:
        return errors.PublishError(
            f"{head}: the filesystem is mounted read-only; remount it read-write or choose another DEST"
        )
    if exc.errno == errno.ENOSPC:
        return errors.PublishError(
            f"{head}: no space left on the device; free space and run again (the partial copy is resumed)"
        )
    if exc.errno == errno.EIO:
        return errors.PublishError(
            f"{head}: the disk reported an I/O error; check the device (dmesg) and run again"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and doing.startswith("create"):
        return errors.PublishError(
            f"{head}: a file is where a folder is expected; move it away or choose another DEST"
        )
    return errors.PublishError(f"{head}: {exc.strerror or exc}")


@contextmanager
def _wrap(doing: str) -> Iterator[None]:
    try:
        yield
    except errors.CorralError:
        raise
    except OSError as exc:
        raise _os_error(exc, doing) from exc


# -- low-level file system steps --------------------------------------------------------------

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _renameat2 = _libc.renameat2
except (OSError, AttributeError):  # not glibc, or too old
    _libc = None
_syncfs = getattr(_libc, "syncfs", None) if _libc is not None else None
_sync_file_range = (
    getattr(_libc, "sync_file_range", None) if _libc is not None else None
)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_uint,
    )
_fadvise = getattr(os, "posix_fadvise", None)
_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4
_NO_SYNC_FILE_RANGE = (errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP)
"""errno values meaning "sync_file_range does not work on this file": the final fsync does it all."""
EARLY_WRITEBACK = 64 << 20
"""Files at least this large are written to the disk while they are copied (see _Writeback)."""
WRITEBACK_WINDOW = 32 << 20
"""Bytes of a large file copied but not yet known to be on the disk. Beyond it the
copy waits for the oldest chunk, then lets its pages go: the flush keeps pace with
the copy, and a 2 GB file occupies 32 MB of page cache instead of 2 GB."""
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_noreplace(old: Path, new: Path) -> None:
    """Rename that fails with FileExistsError instead of replacing ``new``.

    A plain rename silently replaces an empty folder or any file; renameat2's
    RENAME_NOREPLACE makes "refuse to overwrite" hold even against a racing
    writer. Where it is missing (other libcs, some network filesystems) we
    check first and rename, which leaves only a tiny race."""
    if _libc is not None:
        rc = _renameat2(
            _AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), _RENAME_NOREPLACE
        )
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(
                err, os.strerror(err), str(new) if err == errno.EEXIST else str(old)
            )
    if os.path.lexists(new):
        raise FileExistsError(errno.EEXIST, "File exists", str(new))
    os.rename(old, new)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network filesystems refuse fsync on folders; data files were synced
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _sync_filesystem(path: Path) -> bool:
    """Flush the whole filesystem holding ``path`` with one syncfs(2); False where unavailable.

    One syncfs after the copy costs about as much as the journal commit it
    triggers, where an fsync per file costs one commit each: 10,000 small
    files take seconds more with per-file fsync on ordinary disks."""
    if _syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                return False
            raise OSError(err, os.strerror(err), str(path))
        return True
    finally:
        os.close(fd)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the destination folder, so two publishers into
    the same folder never clean up each other's partial copies."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, "open the destination folder") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except (
            OSError
        ) as exc:  # filesystems without locks (some SMB/NFS mounts): go on unlocked
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def scan(root: Path) -> list[Entry]:
    """Everything under ``root`` (or ``root`` itself when it is a file), sorted, folders first."""
    # The item itself may be a link to a file or folder; links inside are kept as links.
    st = os.stat(root)
    if stat.S_ISREG(st.st_mode):
        return [Entry("", "file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))]
    out: list[Entry] = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            crel = f"{rel}{child.name}"
            cst = child.stat(follow_symlinks=False)
            mode = stat.S_IMODE(cst.st_mode)
            if stat.S_ISDIR(cst.st_mode):
                out.append(Entry(crel, "dir", 0, cst.st_mtime_ns, mode))
                walk(child.path, crel + "/")
            elif stat.S_ISREG(cst.st_mode):
                out.append(Entry(crel, "file", cst.st_size, cst.st_mtime_ns, mode))
            elif stat.S_ISLNK(cst.st_mode):
                out.append(
                    Entry(
                        crel, "link", 0, cst.st_mtime_ns, mode, os.readlink(child.path)
                    )
                )
            else:
                raise errors.PublishError(
                    f"cannot publish {child.path}: only files, folders and symbolic links can be published"
                )

    walk(str(root), "")
    return out


_NOT_HERE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)
"""errno values meaning "this copy call does not work between these two files"."""


class _Writeback:
    """Sends a large file to the disk while it is being copied, so the flush
    that makes it durable overlaps the copy instead of following it.

    Each copied chunk is handed to the disk at once (sync_file_range WRITE).
    Once more than WRITEBACK_WINDOW bytes are on their way, the copy waits for
    the oldest chunk and drops its now clean pages (posix_fadvise DONTNEED):
    the copy cannot outrun the disk by more than the window, and the page
    cache reuses a few warm pages instead of filling gigabytes. None of this
    makes the file durable (sync_file_range writes neither metadata nor the
    disk's cache): the caller's fsync or syncfs still does.

    ``keep_cached`` (for a sha256 check, which reads the copy again) leaves
    the pages in the cache: chunks are only started, never waited for. Waiting
    without dropping is the worst of both: every chunk then needs fresh pages
    and the copy stalls on the disk."""

    def __init__(self, fd: int, path: str, keep_cached: bool = False) -> None:
        self.fd, self.path = fd, path
        self.keep_cached = keep_cached
        self.on = _sync_file_range is not None
        self.waiting: deque[tuple[int, int]] = deque()
        self.in_flight = 0

    def wrote(self, offset: int, n: int) -> None:
        """Bytes ``offset`` to ``offset + n`` have just been copied."""
        if not self.on or not self._range(offset, n, _SYNC_FILE_RANGE_WRITE):
            return
        self.waiting.append((offset, n))
        self.in_flight += n
        while self.on and not self.keep_cached and self.in_flight > WRITEBACK_WINDOW:
            old, m = self.waiting.popleft()
            self.in_flight -= m
            if self._range(
                old,
                m,
                _SYNC_FILE_RANGE_WAIT_BEFORE
                | _SYNC_FILE_RANGE_WRITE
                | _SYNC_FILE_RANGE_WAIT_AFTER,
            ):
                self._drop(old, m)

    def synced(self) -> None:
        """The file was fsynced: its last window is clean and can go as well."""
        if self.on and self.waiting and not self.keep_cached:
            self._drop(self.waiting[0][0], 0)  # 0: to the end of the file
        self.waiting.clear()

    def _range(self, offset: int, n: int, flags: int) -> bool:
        sync_range = _sync_file_range
        if sync_range is not None and sync_range(self.fd, offset, n, flags) == 0:
            return True
        err = errno.ENOSYS if sync_range is None else ctypes.get_errno()
        if err in _NO_SYNC_FILE_RANGE:
            self.on = False  # the final fsync writes everything
            return False
        # A failed write reported here is consumed: the final fsync of this file
        # would return success, so it must fail the copy now.
        raise OSError(err, os.strerror(err), self.path)

    def _drop(self, offset: int, n: int) -> None:
        if _fadvise is None:
            return
        try:
            _fadvise(self.fd, offset, n, os.POSIX_FADV_DONTNEED)
        except OSError:  # only a hint: the pages stay cached
            pass


def _copy_file(
    src: str,
    dst: str,
    entry: Entry,
    advance: Callable[[int], None],
    fsync: bool,
    early_writeback: bool = False,
    keep_cached: bool = False,
) -> None:
    """Copy one regular file's bytes, mode and modification time, then fsync it.

    The modification time is set last: a file whose size and time match the
    source was copied completely, which is how a resumed run knows to keep it."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            offset = 0
            # copy_file_range lets the kernel (or the file server, on NFS/SMB) copy
            # without a trip through user space, and reflinks on btrfs/XFS; across
            # filesystems it may refuse, then sendfile, then plain reads and writes.
            way = 0 if hasattr(os, "copy_file_range") else 1
            writeback = (
                _Writeback(fout, dst, keep_cached)
                if early_writeback and entry.size >= EARLY_WRITEBACK
                else None
            )
            # Stop at the size seen by the scan: asking once more for the end costs a
            # syscall per file, and a file that grew since fails verification anyway.
            while offset < entry.size:
                try:
                    if way == 0:
                        n = os.copy_file_range(fin, fout, CHUNK, offset, offset)
                    elif way == 1:
                        n = os.sendfile(fout, fin, offset, CHUNK)
                    else:
                        data = os.pread(fin, 1 << 20, offset)
                        n = len(data)
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fout, view) :]
                except OSError as exc:
                    if way < 2 and exc.errno in _NOT_HERE:
                        way += 1
                        continue
                    raise
                if n == 0:
                    break
                if writeback is not None:
                    writeback.wrote(offset, n)
                offset += n
                advance(n)
            os.fchmod(fout, entry.mode)
            os.utime(fout, ns=(entry.mtime_ns, entry.mtime_ns))
            if fsync:
                os.fsync(fout)
                if writeback is not None:
                    writeback.synced()
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _join(root: Path, rel: str) -> str:
    return str(root / rel) if rel else str(root)


# -- verification ---------------------------------------------------------------------------


def differences(
    src: Path, copy: Path, verify: Iterable[str], workers: int = WORKERS
) -> list[str]:
    """What differs between ``copy`` and ``src``, one line per path; empty when they match."""
    kinds = set(verify)
    want = {e.rel: e for e in scan(src)}
    have = {e.rel: e for e in scan(copy)}
    out: list[str] = []
    if "count" in kinds or "bytes" in kinds or "sha256" in kinds:
        out += [
            f"{rel or '.'}: missing from the copy"
            for rel in sorted(want.keys() - have.keys())
        ]
        out += [
            f"{rel or '.'}: not in the source"
            for rel in sorted(have.keys() - want.keys())
        ]
    both = sorted(want.keys() & have.keys())
    for rel in both:
        w, h = want[rel], have[rel]
        if w.kind != h.kind:
            out.append(
                f"{rel or '.'}: a {w.kind} in the source, a {h.kind} in the copy"
            )
        elif w.kind == "link" and w.target != h.target:
            out.append(f"{rel}: link points to {h.target!r}, source to {w.target!r}")
        elif (
            w.kind == "file"
            and ("bytes" in kinds or "sha256" in kinds)
            and w.size != h.size
        ):
            out.append(
                f"{rel or '.'}: {h.size} bytes in the copy, {w.size} in the source"
            )
    if "sha256" in kinds:
        files = [
            rel
            for rel in both
            if want[rel].kind == "file" == have[rel].kind
            and want[rel].size == have[rel].size
        ]

        def check(rel: str) -> str | None:
            a, b = _sha256(_join(src, rel)), _sha256(_join(copy, rel))
            return (
                None
                if a == b
                else f"{rel or '.'}: sha256 {b[:12]}… in the copy, {a[:12]}… in the source"
            )

        with ThreadPoolExecutor(max_workers=workers) as pool:
            out += [line for line in pool.map(check, files) if line]
    return out


# -- one item ---------------------------------------------------------------------------------


def _siblings(parent: Path) -> list[str]:
    try:
        return os.listdir(parent)
    except FileNotFoundError:
        return []


def _recover(dest: Path, names: list[str]) -> list[Path]:
    """Undo what a crashed run left beside ``dest``; return leftover partial copies, newest first.

    ``DEST.old-*`` without ``DEST`` means a replace stopped between its two
    renames: the old item goes back, so the final store is as it was before."""
    parent = dest.parent
    olds = sorted(
        (parent / n for n in names if n.startswith(dest.name + OLD)),
        key=lambda p: p.lstat().st_mtime_ns,
    )
    if olds and not os.path.lexists(dest):
        os.rename(olds.pop(), dest)
        _fsync_dir(parent)
    for old in olds:
        _remove(old)
    partials = [parent / n for n in names if n.startswith(dest.name + PARTIAL)]
    return sorted(partials, key=lambda p: p.lstat().st_mtime_ns, reverse=True)


def _copy_into(
    src: Path,
    partial: Path,
    entries: list[Entry],
    progress: Progress | None,
    workers: int,
    fsync: bool,
    keep_cached: bool = False,
) -> int:
    """Fill ``partial`` from ``src`` and make it durable; return how many files
    were already complete there (left by an interrupted run)."""
    advance = progress.advance if progress is not None else (lambda n: None)
    # Prefer one syncfs at the end; fall back to an fsync per file (in threads,
    # so the filesystem can batch them) where syncfs is missing.
    per_file = fsync and _syncfs is None
    if entries and entries[0].rel == "":  # a single file
        if os.path.lexists(partial) and not (
            partial.is_file() and not partial.is_symlink()
        ):
            _remove(partial)
        with _wrap("write"):
            _copy_file(
                str(src), str(partial), entries[0], advance, fsync, fsync, keep_cached
            )
        return 0
    if os.path.lexists(partial) and not partial.is_dir():
        _remove(partial)
    resuming = partial.is_dir()
    with _wrap("create the folder"):
        partial.mkdir(mode=0o700, exist_ok=True)
    kept = 0
    jobs: list[Entry] = []
    wanted = {e.rel for e in entries}
    s_root, p_root = str(src), str(partial)
    join = os.path.join
    # Things a crashed run left that are no longer in the source would fail the count.
    for e in scan(partial) if resuming else []:
        if e.rel not in wanted and os.path.lexists(join(p_root, e.rel)):
            _remove(partial / e.rel)
    for e in entries:
        target = join(p_root, e.rel)
        if e.kind == "dir":
            with _wrap("create the folder"):
                if os.path.islink(target) or (
                    os.path.lexists(target) and not os.path.isdir(target)
                ):
                    os.unlink(target)
                os.makedirs(target, mode=0o700, exist_ok=True)
        elif e.kind == "link":
            if os.path.lexists(target):
                _remove(Path(target))
            with _wrap("create the link"):
                os.symlink(e.target or "", target)
        elif not resuming:
            jobs.append(e)
        else:
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                st = None
            if (
                st is not None
                and stat.S_ISREG(st.st_mode)
                and st.st_size == e.size
                and st.st_mtime_ns == e.mtime_ns
            ):
                kept += 1
                advance(e.size)
                continue
            if st is not None and stat.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            jobs.append(e)

    def one(e: Entry) -> None:
        path = join(s_root, e.rel)
        try:
            _copy_file(
                path, join(p_root, e.rel), e, advance, per_file, fsync, keep_cached
            )
        except FileNotFoundError as exc:
            if not os.path.exists(path):
                raise errors.PublishError(
                    f"{path} disappeared while publishing; is the item still being written?"
                ) from exc
            raise _os_error(exc, "copy") from exc
        except OSError as exc:
            raise _os_error(exc, "copy") from exc

    # Without per-file fsync, threads only fight over the GIL: one is faster.
    if not per_file or len(jobs) <= 1 or workers <= 1:
        for e in jobs:
            one(e)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(one, jobs):
                pass
    # Folders last and deepest first: a file written inside would change their time.
    for e in reversed([e for e in entries if e.kind == "dir"]):
        target = join(p_root, e.rel)
        with _wrap("finish the folder"):
            if per_file:
                _fsync_dir(Path(target))
            os.chmod(target, e.mode)
            os.utime(target, ns=(e.mtime_ns, e.mtime_ns))
    with _wrap("finish the folder"):
        src_st = os.stat(src)
        os.chmod(partial, stat.S_IMODE(src_st.st_mode))
        os.utime(partial, ns=(src_st.st_mtime_ns, src_st.st_mtime_ns))
        if per_file:
            _fsync_dir(partial)
        elif fsync and not _sync_filesystem(partial):
            _fsync_tree(partial)
    return kept


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root``: the fallback where syncfs does not work."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def publish(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    verify: Iterable[str] = DEFAULT_VERIFY,
    delete_source: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    workers: int = WORKERS,
    fsync: bool = True,
    publish_id: str | None = None,
    before_verify: Callable[[Path], None] | None = None,
    leftovers: list[str] | None = None,
    skip_existing: bool = False,
) -> Published:
    """Publish ``src`` (file or folder) as ``dest``; see the module docstring.

    Raises :class:`errors.PublishError` when ``dest`` exists and ``replace`` is
    false, when the copy does not match the source (the message lists the
    differing paths; ``dest`` is untouched), and on I/O errors (naming the path).
    ``before_verify`` is called with the partial copy just before it is checked;
    tests use it to corrupt a byte. ``leftovers`` (names beside ``dest`` that
    belong to it) spares a listing of the destination folder per item.

    When ``dest`` exists (and no ``replace``) but ``delete_source`` is asked and
    ``dest`` already matches ``src``, the source is deleted and the item
    reported as skipped: that is a rerun after a crash between the rename and
    the deletion. ``skip_existing`` reports other existing items as skipped
    instead of failing."""
    src_p, dest_p = Path(src).absolute(), Path(dest).absolute()
    kinds = tuple(verify)
    bad = [k for k in kinds if k not in VERIFY_KINDS]
    if bad:
        raise errors.PublishError(
            f"unknown verification {', '.join(bad)}; choose from {', '.join(VERIFY_KINDS)}"
        )
    if not os.path.lexists(src_p):
        raise errors.PublishError(f"nothing to publish: {src_p} does not exist")
    if dest_p == src_p or src_p in dest_p.parents:
        raise errors.PublishError(f"cannot publish {src_p} into itself ({dest_p})")
    with _wrap("create the folder"):
        dest_p.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest_p.parent):
        with _wrap("clean up beside"):
            partials = _recover(
                dest_p, _siblings(dest_p.parent) if leftovers is None else leftovers
            )
        return _publish_locked(
            src_p,
            dest_p,
            partials,
            kinds,
            delete_source,
            replace,
            progress,
            workers,
            fsync,
            publish_id,
            before_verify,
            skip_existing,
        )


def _publish_locked(
    src: Path,
    dest: Path,
    partials: list[Path],
    kinds: tuple[str, ...],
    delete_source: bool,
    replace: bool,
    progress: Progress | None,
    workers: int,
    fsync: bool,
    publish_id: str | None,
    before_verify: Callable[[Path], None] | None,
    skip_existing: bool,
) -> Published:
    existed = os.path.lexists(dest)
    if existed and not replace:
        with _wrap("clean up"):
            for p in partials:
                _remove(p)
        if delete_source:
            with _wrap("verify"):
                same = not differences(src, dest, kinds, workers)
            if same:  # published by a run that died before deleting the source
                with _wrap("delete"):
                    _remove(src)
                return Published(
                    src,
                    dest,
                    "skipped",
                    source_deleted=True,
                    note="already published; source deleted",
                )
            if skip_existing:
                return Published(
                    src,
                    dest,
                    "skipped",
                    note="a different item is already there; source kept",
                )
        if skip_existing:
            return Published(src, dest, "skipped", note="already published")
        raise errors.PublishError(
            f"{dest} already exists; pass --replace (replace=True) to swap it for {src}"
        )
    with _wrap("read"):
        entries = scan(src)
    if partials:  # resume the newest leftover, drop the rest
        partial = partials[0]
        with _wrap("clean up"):
            for p in partials[1:]:
                _remove(p)
    else:
        partial = (
            dest.parent / f"{dest.name}{PARTIAL}{publish_id or secrets.token_hex(4)}"
        )
    total = sum(e.size for e in entries if e.kind == "file")
    if progress is not None:
        progress.begin(src.name, total)
    with _wrap("copy to"):
        # A sha256 check reads the copy again: keep it in the page cache for that.
        keep_cached = "sha256" in kinds
        kept = _copy_into(src, partial, entries, progress, workers, fsync, keep_cached)
    if before_verify is not None:
        before_verify(partial)
    with _wrap("verify"):
        diff = differences(src, partial, kinds, workers)
    if diff:
        # The bad copy goes: resuming it would keep a corrupted file whose size and time look right.
        with _wrap("clean up"):
            _remove(partial)
        shown = "\n  ".join(diff[:SHOW_DIFFERENCES])
        more = (
            f"\n  ... and {len(diff) - SHOW_DIFFERENCES} more"
            if len(diff) > SHOW_DIFFERENCES
            else ""
        )
        raise errors.PublishError(
            f"verification ({','.join(kinds)}) failed for {src}; {dest} was not touched. Differences:\n  {shown}{more}"
        )
    with _wrap("rename into place"):
        if existed:
            # Old aside, new in, and only then drop the old: a crash between the
            # two renames is rolled back by _recover on the next run.
            old = dest.parent / f"{dest.name}{OLD}{secrets.token_hex(4)}"
            os.rename(dest, old)
            os.rename(partial, dest)
            _fsync_dir(dest.parent)
            _remove(old)
        else:
            _rename_noreplace(partial, dest)
            _fsync_dir(dest.parent)
    if delete_source:
        try:
            _remove(src)
        except OSError as exc:
            raise errors.PublishError(
                f"{dest} was published, but the source could not be deleted: {_os_error(exc, 'delete')}"
            ) from exc
    files = sum(1 for e in entries if e.kind != "dir")
    return Published(
        src,
        dest,
        "replaced" if existed else "published",
        files,
        total,
        kept,
        delete_source,
    )


# -- a staging folder ----------------------------------------------------------------------------


def _is_item_name(name: str) -> bool:
    return not name.startswith(".") and PARTIAL not in name and OLD not in name


def find_items(staging: Path, depth: int = 1) -> list[str]:
    """Relative paths of the items in ``staging``: its children (depth 1) or
    ``<category>/<slug>`` (depth 2), hidden and partial names left out."""
    if depth < 1:
        raise errors.PublishError(f"depth must be 1 or more, not {depth}")
    level = [""]
    for d in range(depth):
        nxt: list[str] = []
        for rel in level:
            folder = staging / rel if rel else staging
            with _wrap("read"):
                names = sorted(os.listdir(folder))
            for n in names:
                if not _is_item_name(n):
                    continue
                child = f"{rel}/{n}" if rel else n
                if d < depth - 1 and not (staging / child).is_dir():
                    continue  # a stray file where categories are
                nxt.append(child)
        level = nxt
    return level


def publish_each(
    staging: str | os.PathLike[str],
    dest_root: str | os.PathLike[str],
    *,
    depth: int = 1,
    replace: bool = False,
    on_item: Callable[[Published], None] | None = None,
    **kwargs: object,
) -> list[Published]:
    """Publish every item of ``staging`` into the same relative place under
    ``dest_root``; items already there are skipped (or swapped with ``replace``).

    Stops at the first failure; items published before it stay published, and
    ``on_item`` has been told about each of them as it finished."""
    staging_p, root = Path(staging).absolute(), Path(dest_root).absolute()
    if not staging_p.is_dir():
        raise errors.PublishError(
            f"{staging_p} is not a folder; --each publishes the items inside a staging folder"
        )
    results: list[Published] = []
    listings: dict[Path, dict[str, list[str]]] = {}
    for rel in find_items(staging_p, depth):
        src, dest = staging_p / rel, root / rel
        if (
            dest.parent not in listings
        ):  # one listing per destination folder, not one per item
            listings[dest.parent] = _leftovers_by_owner(_siblings(dest.parent))
        mine = listings[dest.parent].get(dest.name, [])
        if mine:  # first undo a crashed run: an interrupted replace may bring the old item back
            with _locked(dest.parent), _wrap("clean up beside"):
                mine = [p.name for p in _recover(dest, mine)]
        if os.path.lexists(dest) and not replace and not kwargs.get("delete_source"):
            if mine:  # partial copies beside a finished item are stale
                with _locked(dest.parent), _wrap("clean up beside"):
                    for name in mine:
                        _remove(dest.parent / name)
            result = Published(src, dest, "skipped", note="already published")
        else:
            result = publish(
                src, dest, replace=replace, leftovers=mine, skip_existing=True, **kwargs
            )  # type: ignore[arg-type]
        results.append(result)
        if on_item is not None:
            on_item(result)
    return results


def _leftovers_by_owner(names: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in names:
        for mark in (PARTIAL, OLD):
            cut = n.rfind(mark)
            if cut > 0:
                out.setdefault(n[:cut], []).append(n)
    return out
