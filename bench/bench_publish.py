"""Publish throughput against ``cp -r`` (issue 3 item 7).

    .venv/bin/python bench/bench_publish.py [--quick] [--trials 3] [--dir /tmp]

Two items, each published with the default verification (count + bytes) and
copied with ``cp -r`` in the same run, trials interleaved so both see the same
machine:

1. 10,000 small files (1-32 KB, in 100 folders, about 160 MB);
2. one large file of 512 MB. The issue asks for 2 GB; 512 MB spares the
   shared disk and is already far beyond the page-cache-free regime of a
   single sendfile loop, so the ratio is the same story.

Ratios are throughput(publish) / throughput(cp -r), so 1.0 means as fast as
cp and the target is >= 0.7. publish also makes the copy durable (one syncfs)
and cp does not, so the ratio against ``cp -r && sync`` is printed as well,
and publish with ``fsync=False`` shows what the copy and checks cost alone.
Both read the source from the page cache. The machine is shared and noisy:
read the medians and the ratios, not single numbers.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corral import publish  # noqa: E402


def make_small(root: Path, files: int) -> int:
    rng = random.Random(7)
    total = 0
    blob = os.urandom(32 << 10)
    for i in range(files):
        folder = root / f"ep{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1 << 10, 32 << 10)
        (folder / f"{i:05d}.avif").write_bytes(i.to_bytes(4, "big") + blob[4:size])
        total += size
    return total


def make_large(path: Path, size: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(4 << 20)
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            f.write(i.to_bytes(8, "big") + block[8:])  # real data, no holes
    return size


def timed(fn: object) -> float:
    subprocess.run(
        ["sync"], check=True
    )  # start each measurement with no one else's dirty pages
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def clean(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def bench(
    name: str, src: Path, nbytes: int, work: Path, trials: int, sha: bool
) -> None:
    cp_s: list[float] = []
    sync_s: list[float] = []
    pub_s: list[float] = []
    sha_s: list[float] = []
    nosync_s: list[float] = []
    for trial in range(trials):
        out_cp, out_pub = work / f"cp-{trial}", work / f"pub-{trial}"
        cp_s.append(
            timed(
                lambda: subprocess.run(["cp", "-r", str(src), str(out_cp)], check=True)
            )
        )
        sync_s.append(_sync_time())  # right after cp: what its copy still owed the disk
        pub_s.append(timed(lambda: publish.publish(src, out_pub)))
        out_nosync = work / f"nosync-{trial}"
        nosync_s.append(timed(lambda: publish.publish(src, out_nosync, fsync=False)))
        clean(out_cp)
        clean(out_pub)
        clean(out_nosync)
        if sha:
            out_sha = work / f"sha-{trial}"
            sha_s.append(
                timed(
                    lambda: publish.publish(
                        src, out_sha, verify=("count", "bytes", "sha256")
                    )
                )
            )
            clean(out_sha)
    cp, sy, pub = (
        statistics.median(cp_s),
        statistics.median(sync_s),
        statistics.median(pub_s),
    )
    mb = nbytes / 1e6
    print(f"{name}: {mb:.0f} MB, {trials} trials, medians")
    print(f"  cp -r              {cp:7.3f} s  {mb / cp:8.1f} MB/s")
    print(f"  cp -r && sync      {cp + sy:7.3f} s  {mb / (cp + sy):8.1f} MB/s")
    print(f"  publish count,bytes{pub:7.3f} s  {mb / pub:8.1f} MB/s")
    ns = statistics.median(nosync_s)
    print(
        f"  publish, no fsync  {ns:7.3f} s  {mb / ns:8.1f} MB/s  (fsync=False, bench only: the copy and checks alone)"
    )
    paired = statistics.median(c / p for c, p in zip(cp_s, pub_s))
    print(
        f"  ratio vs cp -r          {cp / pub:5.2f}x   (target >= 0.70x; median of per-trial ratios {paired:.2f}x)"
    )
    print(f"  ratio vs cp -r && sync  {(cp + sy) / pub:5.2f}x")
    if sha_s:
        s = statistics.median(sha_s)
        print(
            f"  publish +sha256    {s:7.3f} s  {mb / s:8.1f} MB/s  ratio vs cp -r {cp / s:5.2f}x"
        )


def _sync_time() -> float:
    start = time.perf_counter()
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 files and 128 MB")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--dir",
        default=None,
        help="where to build the items (default: the system temp folder)",
    )
    parser.add_argument(
        "--sha256", action="store_true", help="also time --verify count,bytes,sha256"
    )
    args = parser.parse_args()
    files = 2000 if args.quick else 10_000
    large = (128 if args.quick else 512) << 20
    with tempfile.TemporaryDirectory(
        prefix="corral-bench-publish-", dir=args.dir
    ) as tmp:
        work = Path(tmp)
        small_src = work / "src-small"
        nbytes = make_small(small_src, files)
        bench(
            f"{files:,} small files", small_src, nbytes, work, args.trials, args.sha256
        )
        clean(small_src)
        large_src = work / "src-large" / "big.bin"
        nbytes = make_large(large_src, large)
        bench(
            f"one {large >> 20} MB file",
            large_src,
            nbytes,
            work,
            args.trials,
            args.sha256,
        )


if __name__ == "__main__":
    main()
