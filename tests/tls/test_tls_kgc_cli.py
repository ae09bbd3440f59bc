"""`kgc setup` / `kgc tls-issue` make the consortium CA and its certificates; `node init` and
`aggregator init` install them, checked, with the key re-encrypted under the party's password."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.keyfile import save_eth_key
from fedledger.cli import app
from fedledger.protocol.consortium import Consortium, Member, consortium_identity
from fedledger.sm9 import SignMasterKey, extract_sign_key
from fedledger.sm9.threshold import split_key
from fedledger.tls import (
    ConsortiumCA,
    TLSMaterialError,
    bound_address,
    bound_sm9_identity,
    check_issued,
    load_certificate,
    load_private_key,
)

runner = CliRunner()
CHAIN_ID = 31337


@pytest.fixture
def roster(tmp_path: Path, dev_accounts: DevRoles) -> Path:
    members = tuple(
        Member(f"hospital-{i + 1}", a.address, f"inst:hospital-{i + 1}", i + 1)
        for i, a in enumerate(dev_accounts.institutions[:3])
    )
    path = tmp_path / "consortium.json"
    Consortium(CHAIN_ID, "0x" + "ab" * 20, f"consortium:{CHAIN_ID}:0x{'ab' * 20}", 2, members).save(path)
    (tmp_path / "pw").write_text("kgc password\n")
    return path


def _setup(tmp_path: Path, *extra: str) -> object:
    return runner.invoke(
        app, ["kgc", "setup", "--out", str(tmp_path / "kgc"), "--password-file", str(tmp_path / "pw"), *extra]
    )


def test_setup_makes_a_ca_a_server_certificate_and_member_certificates_bound_to_addresses(
    tmp_path: Path, roster: Path, dev_accounts: DevRoles
) -> None:
    result = _setup(
        tmp_path, "--consortium", str(roster), "--aggregator-host", "agg.example", "--aggregator-host", "10.0.0.5"
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    tls = tmp_path / "kgc" / "tls"
    ca = load_certificate(tls / "ca.pem")
    server = load_certificate(tls / "aggregator-cert.pem")
    check_issued(ca, server)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agg.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    for i, account in enumerate(dev_accounts.institutions[:3]):
        cert = load_certificate(tls / f"hospital-{i + 1}-cert.pem")
        check_issued(ca, cert)
        assert bound_address(cert, CHAIN_ID) == account.address.lower()
        assert bound_sm9_identity(cert) == f"inst:hospital-{i + 1}"
        with pytest.raises(TLSMaterialError):
            bound_address(cert, CHAIN_ID + 1)  # bound to this chain only
    for key in [tls / "ca-key.pem", *tls.glob("*-key.pem")]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), key
        with pytest.raises(TLSMaterialError, match="wrong password"):
            load_private_key(key, "not the kgc password")


def test_setup_with_the_consortiums_own_ca_issues_from_that_ca(tmp_path: Path, roster: Path) -> None:
    own = ConsortiumCA.generate("Hospital Group Root")
    own.save(tmp_path / "own-ca.pem", tmp_path / "own-ca-key.pem", "kgc password")
    result = _setup(
        tmp_path, "--tls-ca", str(tmp_path / "own-ca.pem"), "--tls-ca-key", str(tmp_path / "own-ca-key.pem"),
        "--consortium", str(roster),
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    tls = tmp_path / "kgc" / "tls"
    assert load_certificate(tls / "ca.pem") == own.certificate
    check_issued(own.certificate, load_certificate(tls / "hospital-2-cert.pem"))


def test_a_given_ca_that_is_not_a_ca_is_one_line_and_writes_nothing(tmp_path: Path, roster: Path) -> None:
    ca = ConsortiumCA.generate()
    leaf = ca.issue_server(["localhost"])
    leaf.save(tmp_path / "leaf.pem", tmp_path / "leaf-key.pem", "kgc password")
    result = _setup(tmp_path, "--tls-ca", str(tmp_path / "leaf.pem"), "--tls-ca-key", str(tmp_path / "leaf-key.pem"))
    assert result.exit_code == 2 and "not a CA" in result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert not (tmp_path / "kgc").exists()


def test_tls_issue_rotates_one_member_and_refuses_to_overwrite_without_force(tmp_path: Path, roster: Path) -> None:
    assert _setup(tmp_path, "--consortium", str(roster)).exit_code == 0  # type: ignore[attr-defined]
    tls = tmp_path / "kgc" / "tls"
    before = (tls / "hospital-2-cert.pem").read_bytes()
    args = ["kgc", "tls-issue", "--tls-dir", str(tls), "--consortium", str(roster), "--member", "hospital-2"]
    refused = runner.invoke(app, [*args, "--password-file", str(tmp_path / "pw")])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert (tls / "hospital-2-cert.pem").read_bytes() == before
    rotated = runner.invoke(app, [*args, "--force", "--password-file", str(tmp_path / "pw")])
    assert rotated.exit_code == 0, rotated.output
    assert (tls / "hospital-2-cert.pem").read_bytes() != before
    check_issued(load_certificate(tls / "ca.pem"), load_certificate(tls / "hospital-2-cert.pem"))
    unknown = runner.invoke(app, [*args[:-1], "hospital-9", "--force", "--password-file", str(tmp_path / "pw")])
    assert unknown.exit_code == 2 and "hospital-9" in unknown.output


def _node_init(tmp_path: Path, deployment: Deployment, dev_accounts: DevRoles, cert: str) -> object:
    """`node init` of the ledger's first dev institution (SM9 id hospital-1), with the TLS files `kgc setup` issued."""
    kgc = tmp_path / "kgc"
    master = SignMasterKey.generate()
    master.public_key.save(tmp_path / "mpk.pem")
    identity = consortium_identity(deployment.chain_id, deployment.address)
    shares, public = split_key(master, identity, 2, 3)
    public.save(tmp_path / "threshold.json")
    members = tuple(Member(f"hospital-{i + 1}", a.address, f"hospital-{i + 1}", i + 1)
                    for i, a in enumerate(dev_accounts.institutions[:3]))  # fmt: skip
    Consortium(deployment.chain_id, deployment.address, identity, 2, members).save(tmp_path / "ledger-roster.json")
    extract_sign_key(master, "hospital-1").save(tmp_path / "sm9.key", "transport password")
    shares[0].save(tmp_path / "share.key", "transport password")
    (tmp_path / "transport-pw").write_text("transport password\n")
    save_eth_key(tmp_path / "eth.json", dev_accounts.institutions[0], "node password")
    (tmp_path / "node-pw").write_text("node password\n")
    return runner.invoke(
        app,
        ["node", "init", "--home", str(tmp_path / "node"), "--name", "hospital-1", "--sm9-identity", "hospital-1",
         "--width-rate", "1", "--rpc-url", deployment.rpc_url, "--contract", deployment.address,
         "--aggregator-url", "https://127.0.0.1:8700", "--sm9-key", str(tmp_path / "sm9.key"),
         "--share", str(tmp_path / "share.key"), "--master-public-key", str(tmp_path / "mpk.pem"),
         "--threshold-public", str(tmp_path / "threshold.json"), "--consortium", str(tmp_path / "ledger-roster.json"),
         "--data-source", "breast_cancer", "--store", "local:x", "--eth-key", str(tmp_path / "eth.json"),
         "--kgc-password-file", str(tmp_path / "transport-pw"), "--password-file", str(tmp_path / "node-pw"),
         "--tls-ca", str(kgc / "tls" / "ca.pem"), "--tls-cert", str(kgc / "tls" / f"{cert}-cert.pem"),
         "--tls-key", str(kgc / "tls" / f"{cert}-key.pem")],
    )  # fmt: skip


def test_node_init_installs_its_own_certificate_and_refuses_another_members(
    tmp_path: Path, roster: Path, dev_accounts: DevRoles, ledger_deployment: Deployment
) -> None:
    from node.config import load_config

    assert _setup(tmp_path, "--consortium", str(roster)).exit_code == 0  # type: ignore[attr-defined]
    wrong = _node_init(tmp_path, ledger_deployment, dev_accounts, "hospital-2")
    assert wrong.exit_code == 2 and "bound to another address" in wrong.output  # type: ignore[attr-defined]
    assert not (tmp_path / "node").exists()
    result = _node_init(tmp_path, ledger_deployment, dev_accounts, "hospital-1")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    config, base = load_config(tmp_path / "node")
    files = config.tls_files(base)
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    files.open("node password")  # re-encrypted under the node's own password ...
    with pytest.raises(TLSMaterialError):
        files.open("kgc password")  # ... not the KGC's
    issued_key = tmp_path / "kgc" / "tls" / "hospital-1-key.pem"
    with pytest.raises(TLSMaterialError):  # as issued, the KGC's password does not open it either
        load_private_key(issued_key, "kgc password")
    load_private_key(issued_key, (tmp_path / "kgc" / "tls" / "hospital-1-key.pem.password").read_text().strip())


def test_tls_issue_new_ca_replaces_the_ca_and_reissues_from_it(tmp_path: Path, roster: Path) -> None:
    assert _setup(tmp_path, "--consortium", str(roster)).exit_code == 0  # type: ignore[attr-defined]
    tls = tmp_path / "kgc" / "tls"
    old_ca = load_certificate(tls / "ca.pem")
    args = ["kgc", "tls-issue", "--tls-dir", str(tls), "--consortium", str(roster), "--new-ca"]
    refused = runner.invoke(app, [*args, "--password-file", str(tmp_path / "pw")])
    assert refused.exit_code == 2 and "ca.pem" in refused.output
    assert load_certificate(tls / "ca.pem") == old_ca
    result = runner.invoke(app, [*args, "--force", "--password-file", str(tmp_path / "pw")])
    assert result.exit_code == 0, result.output
    new_ca = load_certificate(tls / "ca.pem")
    assert new_ca != old_ca
    check_issued(new_ca, load_certificate(tls / "hospital-3-cert.pem"))
    with pytest.raises(TLSMaterialError, match="not issued by the consortium CA"):
        check_issued(old_ca, load_certificate(tls / "hospital-3-cert.pem"))
