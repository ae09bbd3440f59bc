"""``fedledger bench store``: put/get throughput of the embedded store next to hashlib.sha256.

Everything is measured in one run on the same file: hashlib.sha256 over its bytes, timing only
the hashing (the baseline the goal is stated against: put and get >= 0.5 of it); computing the
CID only (chunking + hashing, no writes); put; get (every block read and verified); and a plain
fsync'd copy of the file, which shows how fast this machine's disk is, the ceiling for put.
Peak RSS growth shows that memory stays bounded.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedledger.store.builder import compute_cid
from fedledger.store.local import LocalStore

_MIB = 1 << 20
GOAL_RATIO = 0.5


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, _MIB)
            out.write(os.urandom(n))
            left -= n


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sha256_seconds(path: Path) -> float:
    """Time spent in hashlib.sha256 alone over the file's bytes (reading them is not counted)."""
    h = hashlib.sha256()
    spent = 0.0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(_MIB):
            start = time.perf_counter()
            h.update(chunk)
            spent += time.perf_counter() - start
    return spent


def _copy_with_fsync(src: Path, dst: Path) -> None:
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while chunk := fin.read(_MIB):
            fout.write(chunk)
        os.fsync(fout.fileno())


def run_store_bench(size_mib: int = 1024, work_dir: str | Path | None = None, durable: bool = True) -> dict[str, Any]:
    """Measure on a fresh random file of ``size_mib`` MiB in ``work_dir`` (default: a temp dir)."""
    if size_mib < 1:
        raise ValueError("size_mib must be at least 1")
    size = size_mib * _MIB
    base = Path(tempfile.mkdtemp(prefix="fedledger-store-bench-", dir=work_dir))
    try:
        source = base / "source.bin"
        _write_random_file(source, size)
        rss_before = _peak_rss_mib()
        sha_s = _sha256_seconds(source)
        cid_s = _timed(lambda: compute_cid(source))
        store = LocalStore(base / "store", durable=durable)
        cids: list[str] = []
        put_s = _timed(lambda: cids.append(store.put(source)))

        def read_all() -> None:
            for _ in store.get(cids[0]):
                pass

        get_s = _timed(read_all)
        rss_after = _peak_rss_mib()
        copy_s = _timed(lambda: _copy_with_fsync(source, base / "copy.bin"))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def mbps(seconds: float) -> float:
        return round(size / seconds / 1e6, 1)

    sha, put, get = mbps(sha_s), mbps(put_s), mbps(get_s)
    return {
        "file_mib": size_mib,
        "cid": cids[0],
        "durable": durable,
        "sha256_mb_per_s": sha,
        "cid_only_mb_per_s": mbps(cid_s),
        "put_mb_per_s": put,
        "get_mb_per_s": get,
        "disk_copy_fsync_mb_per_s": mbps(copy_s),
        "put_ratio_to_sha256": round(put / sha, 3),
        "get_ratio_to_sha256": round(get / sha, 3),
        "cid_only_ratio_to_sha256": round(mbps(cid_s) / sha, 3),
        "goal_ratio": GOAL_RATIO,
        "put_meets_goal": put / sha >= GOAL_RATIO,
        "get_meets_goal": get / sha >= GOAL_RATIO,
        "peak_rss_growth_mib": round(rss_after - rss_before, 1),
    }
