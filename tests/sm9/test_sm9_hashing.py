"""SM3 (compiled, via fedledger.digests) agrees with gmssl's independent pure-Python SM3."""

from __future__ import annotations

from gmssl import func as gmssl_func
from gmssl import sm3 as gmssl_sm3
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.digests import sm3
from fedledger.sm9.hashing import h1, h2, identity_bytes


def _gmssl_sm3(data: bytes) -> bytes:
    return bytes.fromhex(gmssl_sm3.sm3_hash(gmssl_func.bytes_to_list(data)))


def test_sm3_standard_example_abc() -> None:
    # GB/T 32905 appendix A.1
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_sm3_agrees_with_gmssl(data: bytes) -> None:
    assert sm3(data) == _gmssl_sm3(data)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=100))
def test_h1_h2_in_range_and_domain_separated(data: bytes) -> None:
    n = int("B640000002A3A6F1D603AB4FF58EC74449F2934B18EA8BEEE56EE19CD69ECF25", 16)
    a, b = h1(data), h2(data)
    assert 1 <= a < n and 1 <= b < n
    assert a != b


def test_h1_by_hand_from_gmssl_sm3() -> None:
    """H1 recomputed from the definition with gmssl's SM3 (independent hash implementation)."""
    n = int("B640000002A3A6F1D603AB4FF58EC74449F2934B18EA8BEEE56EE19CD69ECF25", 16)
    z = b"Alice\x01"
    ha = _gmssl_sm3(b"\x01" + z + b"\x00\x00\x00\x01") + _gmssl_sm3(b"\x01" + z + b"\x00\x00\x00\x02")
    assert h1(z) == int.from_bytes(ha[:40], "big") % (n - 1) + 1


def test_identity_text_is_utf8() -> None:
    assert identity_bytes("inst:Zhōngshān") == "inst:Zhōngshān".encode()
    assert identity_bytes(b"raw") == b"raw"
