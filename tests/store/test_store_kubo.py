"""The Kubo backend: against a stand-in RPC server (no Kubo can be installed here), and against a
real Kubo daemon when FEDLEDGER_IPFS_API points at one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fedledger.netutil import free_port
from fedledger.store import (
    BackendUnavailableError,
    BlockNotFoundError,
    ContentMismatchError,
    KuboStore,
    LocalStore,
    export_car,
    import_car,
    open_store,
)
from fedledger.store.kubo import to_multiaddr
from tests.support.standin_kubo import StandinKubo, parse_bool


def test_addresses_are_accepted_as_multiaddr_or_url() -> None:
    assert to_multiaddr("/ip4/127.0.0.1/tcp/5001") == "/ip4/127.0.0.1/tcp/5001"
    assert to_multiaddr("http://127.0.0.1:5001") == "/ip4/127.0.0.1/tcp/5001/http"
    assert to_multiaddr("https://ipfs.example.org") == "/dns/ipfs.example.org/tcp/443/https"
    assert isinstance(open_store("kubo:/ip4/127.0.0.1/tcp/5001"), KuboStore)


def test_kubo_add_sends_kubo_chunking_parameters_against_standin_server(
    standin_kubo: StandinKubo, reference_files: dict[str, Path], ipfs_cid_v0: object
) -> None:
    store = KuboStore(standin_kubo.multiaddr, timeout=10)
    source = reference_files["1MB"]
    cid = store.put(source)
    assert cid == ipfs_cid_v0(source)  # type: ignore[operator]
    _, params = next(r for r in standin_kubo.requests if r[0] == "add")
    assert params["chunker"] == "size-262144"
    assert params["cid-version"] == "0" and parse_bool(params["raw-leaves"]) is False
    assert parse_bool(params["trickle"]) is False and parse_bool(params["pin"]) is True
    assert params["hash"] == "sha2-256"
    assert standin_kubo.uploads[0].read_bytes() == source.read_bytes()  # multipart field "file"


def test_kubo_round_trip_v0_and_v1_against_standin_server(
    standin_kubo: StandinKubo, tmp_path: Path, reference_files: dict[str, Path]
) -> None:
    store = KuboStore(standin_kubo.multiaddr, timeout=10)
    source = reference_files["deep-175-chunks"]
    for version in (0, 1):
        cid = store.put(source, cid_version=version)
        assert cid == LocalStore(tmp_path / f"local{version}").put(source, cid_version=version)
        out = tmp_path / f"out{version}"
        store.get_to_path(cid, out)
        assert out.read_bytes() == source.read_bytes()
        assert store.has(cid) and store.is_pinned(cid)
        assert store.stat(cid).size == source.stat().st_size
    small = store.put(b"hello from a stream", pin=False)
    assert store.read_bytes(small) == b"hello from a stream"
    assert not store.is_pinned(small)
    store.pin(small)
    assert store.is_pinned(small)
    store.unpin(small)
    store.unpin(small)  # idempotent
    assert not store.is_pinned(small)
    assert not store.has("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_kubo_corrupted_blocks_are_rejected_against_standin_server(standin_kubo: StandinKubo, tmp_path: Path) -> None:
    store = KuboStore(standin_kubo.multiaddr, timeout=10)
    cid = store.put(os.urandom(700_000))
    standin_kubo.misbehave.add("corrupt-blocks")
    out = tmp_path / "out"
    with pytest.raises(ContentMismatchError, match=cid):
        store.get_to_path(cid, out)
    assert not out.exists()


def test_kubo_wrong_cid_from_daemon_is_reported_against_standin_server(standin_kubo: StandinKubo) -> None:
    store = KuboStore(standin_kubo.multiaddr, timeout=10)
    standin_kubo.misbehave.add("wrong-hash")
    with pytest.raises(ContentMismatchError, match="returned QmbFMke1"):
        store.put(b"some bytes")


def test_kubo_missing_block_against_standin_server(standin_kubo: StandinKubo) -> None:
    store = KuboStore(standin_kubo.multiaddr, timeout=10)
    with pytest.raises(BlockNotFoundError):
        store.read_bytes("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_car_import_into_kubo_and_export_from_it_against_standin_server(
    standin_kubo: StandinKubo, tmp_path: Path, reference_files: dict[str, Path]
) -> None:
    local = LocalStore(tmp_path / "local")
    cid = local.put(reference_files["deep-175-chunks"])
    export_car(local, cid, tmp_path / "a.car")
    kubo = KuboStore(standin_kubo.multiaddr, timeout=10)
    assert import_car(kubo, tmp_path / "a.car") == [cid]  # via block/put, each block checked
    assert kubo.is_pinned(cid)
    export_car(kubo, cid, tmp_path / "b.car")
    assert (tmp_path / "b.car").read_bytes() == (tmp_path / "a.car").read_bytes()


def test_kubo_unreachable_gives_a_clear_error() -> None:
    address = f"/ip4/127.0.0.1/tcp/{free_port()}/http"  # nothing listens there
    store = KuboStore(address, timeout=2, retries=1, retry_delay=0.01)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as err:
        store.version()
    assert address in str(err.value) and "unreachable" in str(err.value)
    with pytest.raises(BackendUnavailableError):
        store.put(b"data")
    with pytest.raises(BackendUnavailableError):
        store.has("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    assert time.monotonic() - started < 60


# -- a real Kubo, only when FEDLEDGER_IPFS_API is set ------------------------------------------


def test_real_kubo_gives_the_embedded_stores_cids(
    real_kubo_api: str, tmp_path: Path, reference_files: dict[str, Path]
) -> None:
    kubo = KuboStore(real_kubo_api)
    for name in ("empty", "chunk-plus-1", "deep-175-chunks"):
        for version in (0, 1):
            source = reference_files[name]
            expected = LocalStore(tmp_path / "local").put(source, cid_version=version)
            assert kubo.put(source, cid_version=version) == expected
            assert kubo.read_bytes(expected) == source.read_bytes()


def test_real_kubo_dag_import_and_export_match_ours(
    real_kubo_api: str, tmp_path: Path, reference_files: dict[str, Path]
) -> None:
    import httpx

    from fedledger.store.kubo import to_multiaddr as _ma

    parts = _ma(real_kubo_api).split("/")
    base = f"{parts[-1] if parts[-1] in ('http', 'https') else 'http'}://{parts[2]}:{parts[4]}/api/v0"
    local = LocalStore(tmp_path / "local")
    cid = local.put(reference_files["1MB"], cid_version=1)
    export_car(local, cid, tmp_path / "ours.car")
    with open(tmp_path / "ours.car", "rb") as fh:
        reply = httpx.post(f"{base}/dag/import", files={"file": fh}, timeout=60)
    reply.raise_for_status()
    assert cid in reply.text
    exported = httpx.post(f"{base}/dag/export", params={"arg": cid}, timeout=60)
    exported.raise_for_status()
    (tmp_path / "theirs.car").write_bytes(exported.content)
    fresh = LocalStore(tmp_path / "fresh")
    assert import_car(fresh, tmp_path / "theirs.car") == [cid]
    assert fresh.read_bytes(cid) == reference_files["1MB"].read_bytes()
