"""``corral publish`` and :mod:`corral.publish` on real files: a verified copy
beside the final place, an atomic rename, and recovery after kill -9."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral import cli, errors, publish

ROOT = Path(__file__).resolve().parents[2]


def make_item(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (what a reader of the store sees),
    leaving out partial copies, which readers skip by name."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if publish.PARTIAL not in d]
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(
        n for n in os.listdir(folder) if publish.PARTIAL in n or publish.OLD in n
    )


def corral(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.run(["publish", *args])
    out, err = capsys.readouterr()
    return code, out, err


WORK = {
    "ep1/001.avif": b"a" * 5000,
    "ep1/002.avif": b"b" * 7000,
    "ep2/001.avif": b"c" * 3000,
    "meta.json": b"{}",
}


def test_it_publishes_a_folder_and_deletes_the_source_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    expected = tree(src)
    dest = tmp_path / "final" / "webtoon" / "work"

    code, out, err = corral(
        capsys, str(src), str(dest), "--delete-source", "--no-progress"
    )

    assert (code, err) == (0, "")
    assert "published" in out and "4 files" in out
    assert tree(dest) == expected
    assert not src.exists()
    assert leftovers(dest.parent) == []


def test_it_publishes_a_single_file_and_keeps_the_source_by_default(
    tmp_path: Path,
) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(100_000))
    result = publish.publish(
        src, tmp_path / "final" / "a.bin", verify=("count", "bytes", "sha256")
    )
    assert result.outcome == "published" and result.bytes == 100_000
    assert (tmp_path / "final" / "a.bin").read_bytes() == src.read_bytes()
    assert leftovers(tmp_path / "final") == []


def test_it_refuses_to_overwrite_an_existing_item_without_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    dest = make_item(tmp_path / "final" / "work", {"old.txt": b"old"})

    code, _, err = corral(capsys, str(src), str(dest))

    assert code == 1
    assert "already exists; pass --replace" in err and str(dest) in err
    assert tree(dest) == {"old.txt": hashlib.sha256(b"old").hexdigest()}
    assert leftovers(dest.parent) == []


def test_replace_swaps_the_new_item_in_and_drops_the_old_one_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    dest = make_item(tmp_path / "final" / "work", {"old.txt": b"old"})

    code, out, _ = corral(capsys, str(src), str(dest), "--replace")

    assert code == 0 and "replaced" in out
    assert tree(dest) == tree(src)
    assert leftovers(dest.parent) == []


def test_a_replace_interrupted_between_its_two_renames_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    dest = make_item(tmp_path / "final" / "work", {"old.txt": b"old"})
    real_rename = os.rename

    def crash_on_the_second_rename(a: object, b: object) -> None:
        if publish.PARTIAL in str(a):
            raise KeyboardInterrupt  # stands in for the process dying right here
        real_rename(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", crash_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        publish.publish(src, dest, replace=True)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not dest.exists()  # the window the recovery closes

    with pytest.raises(errors.PublishError, match="already exists"):
        publish.publish(
            src, dest
        )  # without --replace: the old item comes back and stays
    assert tree(dest) == {"old.txt": hashlib.sha256(b"old").hexdigest()}
    assert leftovers(dest.parent) == []


def test_each_publishes_new_items_and_skips_those_already_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = tmp_path / "staging"
    make_item(staging / "webtoon" / "alpha", {"1.avif": b"1" * 100})
    make_item(staging / "webtoon" / "beta", {"1.avif": b"2" * 100})
    make_item(staging / "manga" / "gamma", {"1.avif": b"3" * 100})
    make_item(
        staging / "manga" / "delta.partial-dead", {"1.avif": b"x"}
    )  # a collector's own partial: not finished
    final = tmp_path / "final"
    make_item(final / "webtoon" / "beta", {"1.avif": b"already here"})

    code, out, err = corral(
        capsys, str(staging), str(final), "--each", "--depth", "2", "--no-progress"
    )

    assert (code, err) == (0, "")
    assert f"skipped   {final / 'webtoon' / 'beta'}" in out
    assert out.strip().endswith("2 published, 1 skipped")
    assert (final / "webtoon" / "alpha" / "1.avif").read_bytes() == b"1" * 100
    assert (final / "manga" / "gamma" / "1.avif").read_bytes() == b"3" * 100
    assert (final / "webtoon" / "beta" / "1.avif").read_bytes() == b"already here"
    assert not (final / "manga" / "delta.partial-dead").exists()

    code, out, _ = corral(capsys, str(staging), str(final), "--each", "--depth", "2")
    assert code == 0 and out.strip().endswith("0 published, 3 skipped")


def test_sha256_catches_a_corrupted_byte_and_leaves_the_final_store_untouched(
    tmp_path: Path,
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    dest = make_item(tmp_path / "final" / "work", {"old.txt": b"old"})
    before = tree(dest)

    def flip_one_byte(
        partial: Path,
    ) -> None:  # same size, same time: only a checksum can tell
        victim = partial / "ep1" / "002.avif"
        st = victim.stat()
        data = bytearray(victim.read_bytes())
        data[1234] ^= 0xFF
        victim.write_bytes(bytes(data))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    # count+bytes cannot see it ...
    weak = publish.publish(src, tmp_path / "weak" / "work", before_verify=flip_one_byte)
    assert weak.outcome == "published"
    # ... sha256 does, names the file, and the final item stays as it was.
    with pytest.raises(errors.PublishError) as caught:
        publish.publish(
            src,
            dest,
            replace=True,
            verify=("count", "bytes", "sha256"),
            before_verify=flip_one_byte,
        )
    message = str(caught.value)
    assert "ep1/002.avif: sha256" in message and "was not touched" in message
    assert tree(dest) == before
    assert leftovers(dest.parent) == []  # the bad copy is not kept for a resume


def test_a_missing_file_in_the_copy_is_named(tmp_path: Path) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    with pytest.raises(
        errors.PublishError, match="ep2/001.avif: missing from the copy"
    ):
        publish.publish(
            src,
            tmp_path / "final" / "work",
            before_verify=lambda p: (p / "ep2" / "001.avif").unlink(),
        )
    assert not (tmp_path / "final" / "work").exists()


def _big_item(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    block = os.urandom(size)
    for i in range(files):
        (root / f"page{i:04d}.bin").write_bytes(i.to_bytes(4, "big") + block[4:])
    return root


def test_kill_9_in_the_middle_of_a_large_copy_leaves_the_final_store_as_it_was(
    tmp_path: Path,
) -> None:
    files, size = 200, 1 << 20  # 200 MB of real (not sparse) data
    src = _big_item(tmp_path / "staging" / "work", files, size)
    final = make_item(tmp_path / "final", {"other/keep.txt": b"published earlier"})
    before = tree(final)
    dest = final / "work"

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "publish",
            str(src),
            str(dest),
            "--no-progress",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    killed_at = -1
    while time.monotonic() < deadline and proc.poll() is None:
        partials = [
            final / n
            for n in os.listdir(final)
            if n.startswith("work" + publish.PARTIAL)
        ]
        if partials:
            copied = len(os.listdir(partials[0]))
            if 5 <= copied < files:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = copied
                break
        time.sleep(0.001)
    proc.wait(timeout=10)
    assert killed_at > 0, (
        f"the copy finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    )
    proc.stderr.close() if proc.stderr else None

    assert proc.returncode == -signal.SIGKILL
    assert not dest.exists()
    assert tree(final) == before  # a reader of the final store sees nothing new
    assert len(leftovers(final)) == 1  # only the partial copy, by its name

    result = publish.publish(src, dest, verify=("count", "bytes", "sha256"))

    assert result.outcome == "published"
    assert (
        result.resumed_files >= killed_at - 1
    )  # the last file may have been half-written
    assert tree(dest) == tree(src)
    assert leftovers(final) == []


def test_a_permission_error_names_the_path_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    locked = str(src / "ep1" / "002.avif")
    real_open = os.open

    def deny(path: object, *args: object, **kwargs: object) -> int:
        if str(path) == locked:  # root ignores chmod, so deny the one read here
            raise PermissionError(errno.EACCES, "Permission denied", locked)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(errors.PublishError) as caught:
        publish.publish(src, tmp_path / "final" / "work")
    assert f"cannot copy {locked}: permission denied; check the owner and mode" in str(
        caught.value
    )
    assert not (tmp_path / "final" / "work").exists()


def test_a_file_where_the_destination_folder_should_be_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    (tmp_path / "final").write_text("not a folder")

    code, out, err = corral(
        capsys, str(src), str(tmp_path / "final" / "webtoon" / "work")
    )

    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "a file is where a folder is expected" in err
    assert str(tmp_path / "final") in err


def test_it_publishes_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    staging = base / f"corral-test-{os.getpid()}"
    try:
        src = make_item(staging / "work", WORK)
        dest = tmp_path / "final" / "work"
        result = publish.publish(
            src, dest, verify=("count", "bytes", "sha256"), delete_source=True
        )
        assert result.outcome == "published" and tree(dest) == {
            k: hashlib.sha256(v).hexdigest() for k, v in WORK.items()
        }
        assert not src.exists()
        if base == shm:
            assert (
                os.stat(staging).st_dev != os.stat(dest).st_dev
            )  # really two filesystems here
    finally:
        publish._remove(staging)


def test_unknown_verification_is_rejected_with_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = corral(
        capsys, str(tmp_path), str(tmp_path / "x"), "--verify", "count,md5"
    )
    assert code == 2 and "count, bytes, sha256" in err


def test_each_removes_stale_leftovers_beside_items_already_published(
    tmp_path: Path,
) -> None:
    staging = make_item(tmp_path / "staging", {"alpha/1.avif": b"1"})
    final = make_item(
        tmp_path / "final", {"alpha/1.avif": b"1", "alpha.partial-0bad/1.avif": b""}
    )

    results = publish.publish_each(staging, final)

    assert [r.outcome for r in results] == ["skipped"]
    assert leftovers(final) == []


def test_the_progress_bar_can_be_forced_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_item(tmp_path / "staging" / "work", WORK)
    code, out, _ = corral(
        capsys, str(src), str(tmp_path / "final" / "work"), "--progress"
    )
    assert code == 0 and "published" in out


def test_a_rerun_after_a_crash_between_rename_and_source_deletion_deletes_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = tmp_path / "staging"
    make_item(staging / "webtoon" / "alpha", WORK)
    make_item(staging / "webtoon" / "beta", {"1.avif": b"new"})
    final = tmp_path / "final"
    publish.publish(
        staging / "webtoon" / "alpha", final / "webtoon" / "alpha"
    )  # renamed; died before deleting
    make_item(final / "webtoon" / "beta", {"1.avif": b"something else"})

    code, out, _ = corral(
        capsys, str(staging), str(final), "--each", "--depth", "2", "--delete-source"
    )

    assert code == 0
    assert "already published; source deleted" in out
    assert "a different item is already there; source kept" in out
    assert not (staging / "webtoon" / "alpha").exists()
    assert (
        staging / "webtoon" / "beta"
    ).exists()  # never delete what was not published
    assert tree(final / "webtoon" / "alpha") == tree_of(WORK)


def tree_of(files: dict[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


# -- large files: written to the disk while they are copied ----------------------------------


@pytest.fixture
def small_writeback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a 3 MB file "large": 256 KB copy calls and a 512 KB window, so a test
    file goes through many chunks and many waits."""
    monkeypatch.setattr(publish, "EARLY_WRITEBACK", 1 << 20)
    monkeypatch.setattr(publish, "CHUNK", 256 << 10)
    monkeypatch.setattr(publish, "WRITEBACK_WINDOW", 512 << 10)


def _large_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(3 << 20) + b"tail")  # not a multiple of the chunk
    return path


WAIT = 1 | 4  # SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER


def _spy_on_sync_file_range(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[int, int, int]]:
    real = publish._sync_file_range
    if real is None:
        pytest.skip("no sync_file_range in this libc")
    calls: list[tuple[int, int, int]] = []

    def spy(fd: int, offset: int, n: int, flags: int) -> int:
        calls.append((offset, n, flags))
        return int(real(fd, offset, n, flags))

    monkeypatch.setattr(publish, "_sync_file_range", spy)
    return calls


@pytest.mark.usefixtures("small_writeback")
def test_a_large_file_is_flushed_chunk_by_chunk_and_never_runs_ahead_of_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _large_file(tmp_path / "staging" / "big.bin")
    calls = _spy_on_sync_file_range(monkeypatch)
    dropped: list[tuple[int, int]] = []
    real_fadvise = publish._fadvise
    assert real_fadvise is not None

    def fadvise(fd: int, offset: int, n: int, advice: int) -> None:
        dropped.append((offset, n))
        real_fadvise(fd, offset, n, advice)

    monkeypatch.setattr(publish, "_fadvise", fadvise)

    result = publish.publish(src, tmp_path / "final" / "big.bin")

    assert result.outcome == "published"
    assert (tmp_path / "final" / "big.bin").read_bytes() == src.read_bytes()
    started = [(o, n) for o, n, flags in calls if flags == 2]
    waited = [(o, n) for o, n, flags in calls if flags & WAIT]
    assert sum(n for _, n in started) == src.stat().st_size  # every byte, once
    assert waited == started[: len(waited)] and len(waited) >= 8
    # Only the last window is left for the fsync, and its pages go after it.
    assert sum(n for _, n in started[len(waited) :]) <= publish.WRITEBACK_WINDOW
    assert dropped == [*waited, (started[len(waited)][0], 0)]


@pytest.mark.usefixtures("small_writeback")
def test_a_sha256_check_keeps_the_copy_cached_instead_of_waiting_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _large_file(tmp_path / "staging" / "big.bin")
    calls = _spy_on_sync_file_range(monkeypatch)

    publish.publish(
        src, tmp_path / "final" / "big.bin", verify=("count", "bytes", "sha256")
    )

    assert calls and all(flags == 2 for _, _, flags in calls)


@pytest.mark.usefixtures("small_writeback")
@pytest.mark.parametrize("missing", ["sync_file_range", "posix_fadvise"])
def test_a_large_file_is_published_where_the_writeback_calls_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    src = _large_file(tmp_path / "staging" / "big.bin")
    attr = "_sync_file_range" if missing == "sync_file_range" else "_fadvise"
    monkeypatch.setattr(publish, attr, None)

    result = publish.publish(src, tmp_path / "final" / "big.bin")

    assert result.outcome == "published"
    assert (tmp_path / "final" / "big.bin").read_bytes() == src.read_bytes()


def _failing_sync_file_range(code: int, after: int = 0) -> object:
    """A sync_file_range that works ``after`` times, then fails with ``code``."""
    calls = [0]

    def fail(fd: int, offset: int, n: int, flags: int) -> int:
        calls[0] += 1
        if calls[0] <= after:
            return 0
        ctypes.set_errno(code)
        return -1

    fail.calls = calls  # type: ignore[attr-defined]
    return fail


@pytest.mark.usefixtures("small_writeback")
def test_a_filesystem_refusing_sync_file_range_falls_back_to_the_final_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _large_file(tmp_path / "staging" / "big.bin")
    refuse = _failing_sync_file_range(errno.EINVAL)
    monkeypatch.setattr(publish, "_sync_file_range", refuse)

    result = publish.publish(src, tmp_path / "final" / "big.bin")

    assert result.outcome == "published"
    assert (tmp_path / "final" / "big.bin").read_bytes() == src.read_bytes()
    assert refuse.calls == [1]  # type: ignore[attr-defined]  # asked once, then left alone


@pytest.mark.usefixtures("small_writeback")
def test_a_write_error_seen_while_flushing_fails_the_publish_and_leaves_dest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel reports a failed write once per open file: sync_file_range
    # consumes it, so the final fsync would succeed. It must not be ignored.
    src = _large_file(tmp_path / "staging" / "big.bin")
    dest = tmp_path / "final" / "big.bin"
    monkeypatch.setattr(
        publish, "_sync_file_range", _failing_sync_file_range(errno.EIO, after=3)
    )

    with pytest.raises(errors.PublishError) as caught:
        publish.publish(src, dest)

    assert "the disk reported an I/O error; check the device" in str(caught.value)
    assert f"{dest.name}{publish.PARTIAL}" in str(caught.value)
    assert not dest.exists()
