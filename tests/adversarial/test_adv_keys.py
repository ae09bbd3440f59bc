"""Key distribution against a member who collects files: each issued key and share opens for its
recipient alone (finding 8 of issue #10), and a checksummed contract address gives the identity the
audit checks (issue #14).

Real KGC commands on real files, real scrypt keystores, a real Anvil for the audit.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from fedledger.protocol.key_distribution import read_transport_password, transport_password_path
from fedledger.sm9 import SignMasterPublicKey, SignPrivateKey, SM9KeyError
from fedledger.sm9.threshold import KeyShare, ThresholdPublic, threshold_sign_local

MASTER_PASSWORD = "the KGC's own master password"
runner = CliRunner()


def _kgc(args: list[str], master_password: Path, code: int = 0) -> str:
    result = runner.invoke(app, ["kgc", *args, "--password-file", str(master_password)], env={})
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def kgc(tmp_path: Path) -> Path:
    password = tmp_path / "master.pw"
    password.write_text(MASTER_PASSWORD + "\n")
    _kgc(["setup", "--out", str(tmp_path / "kgc")], password)
    return tmp_path


def _master_args(root: Path) -> list[str]:
    return ["--master", str(root / "kgc" / "sign_master.key")]


def _open(path: Path, password: str) -> object:
    if path.name.startswith("share-"):
        return KeyShare.load(path, password)
    return SignPrivateKey.load(path, password)


def test_every_issued_file_opens_with_its_own_transport_password_only(kgc: Path) -> None:
    master_pw = kgc / "master.pw"
    outputs = []
    for name in ("alpha", "beta"):
        outputs.append(
            _kgc(["extract", "--id", f"inst:{name}", *_master_args(kgc), "--out", str(kgc / f"{name}.key")], master_pw)
        )
    outputs.append(_kgc(["split", "--id", "consortium:1:0x01", "-k", "2", "-n", "3", "--out", str(kgc / "shares"),
                         *_master_args(kgc)], master_pw))  # fmt: skip
    issued = [kgc / "alpha.key", kgc / "beta.key", *(kgc / "shares" / f"share-{j}.key" for j in (1, 2, 3))]
    passwords = {path: read_transport_password(transport_password_path(path)) for path in issued}

    assert len(set(passwords.values())) == len(issued), "two issued files share a transport password"
    assert MASTER_PASSWORD not in passwords.values()
    for path in issued:
        assert stat.S_IMODE(transport_password_path(path).stat().st_mode) == 0o600
        assert passwords[path] not in "".join(outputs), "a transport password reached the output"
        _open(path, passwords[path])  # its own transport secret opens it
        for other in [MASTER_PASSWORD, *(p for q, p in passwords.items() if q != path)]:
            with pytest.raises(SM9KeyError, match="wrong password"):
                _open(path, other)


def test_print_password_shows_each_password_once_and_writes_no_password_file(kgc: Path) -> None:
    out = _kgc(["extract", "--id", "inst:alpha", *_master_args(kgc), "--out", str(kgc / "a.key"), "--print-password"],
               kgc / "master.pw")  # fmt: skip
    assert not transport_password_path(kgc / "a.key").exists()
    (line,) = [x for x in out.splitlines() if x.startswith("transport password for")]
    password = line.rsplit(": ", 1)[1]
    assert out.count(password) == 1
    assert SignPrivateKey.load(kgc / "a.key", password).identity == b"inst:alpha"


def test_split_refuses_ambiguous_or_missing_identity_and_changes_nothing(kgc: Path) -> None:
    master_pw = kgc / "master.pw"
    base = ["split", "-k", "2", "-n", "3", "--out", str(kgc / "s"), *_master_args(kgc)]
    both = _kgc([*base, "--id", "x", "--chain-id", "1", "--contract", "0x" + "ab" * 20], master_pw, code=2)
    assert "not both" in both
    bad = _kgc([*base, "--chain-id", "1", "--contract", "0x1234"], master_pw, code=2)
    assert "not an Ethereum address" in bad and bad.count("\n") == 1
    assert "--chain-id and --contract" in _kgc(base, master_pw, code=2)
    assert not (kgc / "s").exists()


def test_a_checksummed_contract_address_gives_the_identity_the_audit_verifies(
    kgc: Path, ledger_deployment: Deployment
) -> None:
    from fedledger.audit.setup import open_audit_service

    checksummed = ledger_deployment.address
    assert checksummed != checksummed.lower()  # the test needs a mixed-case address
    shares_dir = kgc / "shares"
    _kgc(["split", "--id", f"consortium:{ledger_deployment.chain_id}:{checksummed}", "-k", "2", "-n", "3",
          "--out", str(shares_dir), *_master_args(kgc)], kgc / "master.pw")  # fmt: skip
    public = ThresholdPublic.load(shares_dir / "threshold_public.json")
    shares = [KeyShare.load(p, read_transport_password(transport_password_path(p)))
              for p in (shares_dir / "share-1.key", shares_dir / "share-3.key")]  # fmt: skip
    message = b"a round record"
    signature = threshold_sign_local(shares, public, message)

    service = open_audit_service(
        store=f"local:{kgc / 'store'}",
        master_public_key=kgc / "kgc" / "sign_master_public.pem",
        rpc_url=ledger_deployment.rpc_url,
        contract=checksummed,
    )
    identity = service.consortium_identity()
    assert public.identity == identity.encode()
    assert service.verifier.check_sm9(identity, message, signature.to_der()).ok
    # The same identity from --chain-id/--contract, and from an override typed with the checksummed address.
    by_parts = kgc / "by-parts"
    _kgc(["split", "--chain-id", str(ledger_deployment.chain_id), "--contract", checksummed, "-k", "2", "-n", "3",
          "--out", str(by_parts), *_master_args(kgc)], kgc / "master.pw")  # fmt: skip
    assert ThresholdPublic.load(by_parts / "threshold_public.json").identity == public.identity
    typed = open_audit_service(
        store=f"local:{kgc / 'store'}",
        master_public_key=kgc / "kgc" / "sign_master_public.pem",
        rpc_url=ledger_deployment.rpc_url,
        contract=checksummed,
        consortium_identity=f"consortium:{ledger_deployment.chain_id}:{checksummed}",
    )
    assert typed.consortium_identity() == identity
    assert SignMasterPublicKey.load(kgc / "kgc" / "sign_master_public.pem") == public.master_public_key


def test_deploy_with_well_known_dev_keys_is_refused_on_a_chain_that_is_not_local(
    tmp_path: Path, dev_accounts: DevRoles
) -> None:
    from web3 import HTTPProvider, Web3

    with LocalChain("anvil", chain_id=1) as mainnet_lookalike:  # funds the dev accounts, but claims chain 1
        args = ["chain", "deploy", "--rpc-url", mainnet_lookalike.rpc_url, "--dev",
                "--deployment-file", str(tmp_path / "deployment.json")]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "chain 1, not a local dev chain (31337 or 1337)" in result.stderr
        assert result.stderr.count("\n") == 1
        w3 = Web3(HTTPProvider(mainnet_lookalike.rpc_url))
        assert w3.eth.get_transaction_count(dev_accounts.deployer.address) == 0  # nothing was sent
    assert not (tmp_path / "deployment.json").exists()


def test_identities_from_addresses_have_one_form_and_bad_addresses_are_refused() -> None:
    from fedledger.protocol.consortium import Consortium, canonical_address, consortium_identity, normalise_identity

    checksummed = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert consortium_identity(31337, checksummed) == consortium_identity(31337, checksummed.lower())
    assert consortium_identity(31337, checksummed) == f"consortium:31337:{checksummed.lower()}"
    assert normalise_identity(f"consortium:31337:{checksummed}") == consortium_identity(31337, checksummed)
    assert normalise_identity("inst:Hospital-1") == "inst:Hospital-1"  # not address-derived: left as typed
    for bad in ("0x1234", checksummed + "00", "5FbDB2315678afecb367f032d93F642f64180aa3", "0x" + "zz" * 20):
        with pytest.raises(ValueError, match="not an Ethereum address"):
            canonical_address(bad)
    roster = Consortium.from_dict(
        {
            "chain_id": 31337,
            "contract": checksummed,
            "consortium_identity": f"consortium:31337:{checksummed}",
            "threshold": 1,
            "members": [],
        }
    )
    assert roster.consortium_identity == consortium_identity(31337, checksummed)


def test_the_library_api_refuses_shared_or_missing_transport_passwords(tmp_path: Path) -> None:
    from fedledger.protocol.key_distribution import KeyDistributionError, issue_key_shares, issue_sign_key
    from fedledger.sm9 import SignMasterKey

    master = SignMasterKey.generate()
    paths = [tmp_path / f"s{j}.key" for j in (1, 2, 3)]
    for passwords in (["same", "same", "other"], ["a", "b"], ["a", "", "c"]):
        with pytest.raises(KeyDistributionError):
            issue_key_shares(master, "consortium:1:0x01", 2, paths, passwords)
    assert not any(p.exists() for p in paths)  # refused before anything was written
    issued, _ = issue_key_shares(master, "consortium:1:0x01", 2, paths, ["p1", "p2", "p3"])
    assert [KeyShare.load(i.path, i.password).index for i in issued] == [1, 2, 3]
    key = issue_sign_key(master, "inst:alpha", tmp_path / "alpha.key")
    assert key.password not in repr(key) and key.password not in str(issued)
    assert read_transport_password(key.save_password()) == key.password
    with pytest.raises(KeyDistributionError, match="no transport password file"):
        read_transport_password(tmp_path / "nowhere.password")
