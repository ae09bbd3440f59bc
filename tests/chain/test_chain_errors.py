"""Custom errors: every Solidity error has a Python class, and revert data decodes to it."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from fedledger.chain import errors
from fedledger.chain.compiler import CompiledContract


def test_every_contract_error_has_a_python_class(compiled_ledger: CompiledContract) -> None:
    in_abi = {entry["name"] for entry in compiled_ledger.abi if entry["type"] == "error"}
    in_python = {cls.solidity_name for cls in errors.CUSTOM_ERRORS}
    assert in_abi == in_python


def test_revert_data_decodes_with_fields_and_message(compiled_ledger: CompiledContract) -> None:
    decoder = errors.ErrorDecoder(compiled_ledger.abi)
    # Revert data built by hand: selector = keccak256("NotEnoughApprovals(uint256,uint256)")[:4].
    data = keccak(text="NotEnoughApprovals(uint256,uint256)")[:4] + encode(["uint256", "uint256"], [2, 3])
    exc = decoder.decode(data, call="postGlobalModel(round 4)")
    assert isinstance(exc, errors.NotEnoughApprovals)
    assert exc.fields == {"distinct": 2, "required": 3}
    assert str(exc) == (
        "postGlobalModel(round 4): 2 distinct approvals from active institutions, 3 required [NotEnoughApprovals]"
    )
    owner = "0x" + "ab" * 20
    data = keccak(text="Sm9IdTaken(string,address)")[:4] + encode(["string", "address"], ["hospital-a", owner])
    exc = decoder.decode(data)
    assert isinstance(exc, errors.Sm9IdTaken)
    assert "'hospital-a'" in str(exc) and "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB" in str(exc)


def test_unknown_or_empty_revert_data_is_still_an_error(compiled_ledger: CompiledContract) -> None:
    decoder = errors.ErrorDecoder(compiled_ledger.abi)
    panic = keccak(text="Panic(uint256)")[:4] + encode(["uint256"], [0x11])
    assert isinstance(decoder.decode(panic), errors.LedgerRevert)
    assert "no revert data" in str(decoder.decode(b"", call="x()"))
    truncated = keccak(text="NotEnoughApprovals(uint256,uint256)")[:4] + b"\x01"
    assert "undecodable" in str(decoder.decode(truncated))
