"""`node init` given wrong or foreign material refuses at once with one line (finding 12 of issue #10,
and the re-init and password findings of issue #14), and writes nothing.

A real consortium on a real Anvil (demo setup), the real KGC commands for freshly issued files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from demo.in_process import InProcessConsortium
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from fedledger.netutil import free_port
from fedledger.sm9 import SignPrivateKey

runner = CliRunner()


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        yield InProcessConsortium.create(tmp_path_factory.mktemp("adv-init"), chain)


def _args(c: InProcessConsortium, home: Path, tmp_path: Path, who: int = 0, **override: str) -> list[str]:
    """`node init` for hospital-1 with the files of node ``who`` (each under its holder's password)."""
    source = c.layout.node_dirs[who]
    kgc = c.layout.root / "kgc"
    (tmp_path / "new.pw").write_text("the node's new password\n")
    options = {
        "--home": str(home),
        "--name": "hospital-1",
        "--sm9-identity": "inst:hospital-1",
        "--width-rate": "1",
        "--rpc-url": c.layout.deployment.rpc_url,
        "--contract": c.layout.deployment.address,
        "--aggregator-url": c.layout.aggregator_url,
        "--sm9-key": str(source / "keys" / "sm9-sign-key.json"),
        "--share": str(source / "keys" / "consortium-share.json"),
        "--eth-key": str(source / "keys" / "eth-key.json"),
        "--master-public-key": str(kgc / "sign_master_public.pem"),
        "--threshold-public": str(kgc / "threshold_public.json"),
        "--consortium": str(kgc / "consortium.json"),
        "--data-source": "breast_cancer",
        "--store": c.layout.store_spec,
        "--kgc-password-file": str(source / "password"),
        "--eth-key-password-file": str(source / "password"),
        "--password-file": str(tmp_path / "new.pw"),
    }
    options.update({f"--{k.replace('_', '-')}": v for k, v in override.items()})
    return ["node", "init", *(x for pair in options.items() for x in pair if x != "")]


def _refused(args: list[str], home: Path, *fragments: str) -> str:
    result: Result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not home.exists(), "a refused init wrote something"
    return result.stderr


def test_init_refuses_a_contract_that_is_an_account_without_code(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    home = tmp_path / "node"
    eoa = dev_roles(5).outsider.address
    _refused(_args(consortium, home, tmp_path, contract=eoa), home, f"no contract code at {eoa}")


def test_init_refuses_a_contract_that_is_not_the_ledger(consortium: InProcessConsortium, tmp_path: Path) -> None:
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(consortium.layout.deployment.rpc_url))
    deployer = dev_roles(5).outsider
    runtime = bytes.fromhex("60006000f3")  # returns nothing to every call
    init_code = bytes.fromhex("6005600c60003960056000f3") + runtime
    tx = deployer.sign_transaction(
        {
            "data": init_code,
            "gas": 100_000,
            "gasPrice": w3.eth.gas_price,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(deployer.address),
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(tx.raw_transaction))
    other = str(receipt["contractAddress"])
    assert w3.eth.get_code(other) == runtime  # type: ignore[arg-type]
    home = tmp_path / "node"
    args = _args(consortium, home, tmp_path, contract=other)
    _refused(args, home, f"{other} on chain 31337 is not a FederatedLedger")


def test_init_and_status_name_an_unreachable_rpc_url_within_seconds(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    home = tmp_path / "node"
    started = time.monotonic()
    _refused(_args(consortium, home, tmp_path, rpc_url=url), home, f"cannot reach the chain at {url}", "--rpc-url")
    assert time.monotonic() - started < 30

    config = tmp_path / "broken" / "node.toml"
    config.parent.mkdir()
    good = (consortium.layout.node_dirs[0] / "node.toml").read_text()
    config.write_text(good.replace(consortium.layout.deployment.rpc_url, url))
    status = runner.invoke(app, ["node", "status", "-c", str(config)])
    assert status.exit_code == 2 and "Traceback" not in status.output
    assert status.stderr == status.output and status.stderr.count("\n") == 1
    assert f"cannot reach the chain at {url}" in status.stderr


def test_init_refuses_missing_data(consortium: InProcessConsortium, tmp_path: Path) -> None:
    home = tmp_path / "node"
    missing = tmp_path / "no-such-folder"
    _refused(_args(consortium, home, tmp_path, data_source=str(missing)), home, str(missing))


def test_init_refuses_another_hospitals_sm9_key(consortium: InProcessConsortium, tmp_path: Path) -> None:
    c = consortium
    home = tmp_path / "node"
    other = c.layout.node_dirs[1]
    args = _args(c, home, tmp_path, sm9_key=str(other / "keys" / "sm9-sign-key.json"),
                 sm9_key_password_file=str(other / "password"))  # fmt: skip
    _refused(args, home, "--sm9-key is the key of 'inst:hospital-2', not of 'inst:hospital-1'")

    # The same key relabelled as hospital-1's: the header says hospital-1, the point is hospital-2's.
    stolen = SignPrivateKey.load(other / "keys" / "sm9-sign-key.json", (other / "password").read_text().strip())
    forged = tmp_path / "forged.json"
    SignPrivateKey("inst:hospital-1", stolen.point, stolen.master_public_key).save(forged, "forger")
    (tmp_path / "forger.pw").write_text("forger\n")
    args = _args(c, home, tmp_path, sm9_key=str(forged), sm9_key_password_file=str(tmp_path / "forger.pw"))
    _refused(args, home, "--sm9-key does not sign as 'inst:hospital-1'")


def test_init_refuses_a_share_that_is_not_this_institutions(consortium: InProcessConsortium, tmp_path: Path) -> None:
    home = tmp_path / "node"
    other = consortium.layout.node_dirs[2]
    args = _args(consortium, home, tmp_path, share=str(other / "keys" / "consortium-share.json"),
                 share_password_file=str(other / "password"))  # fmt: skip
    _refused(args, home, "--share holds share 3, but the roster gives inst:hospital-1 share 1")


def test_init_refuses_an_ethereum_key_that_is_not_this_institutions(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    home = tmp_path / "node"
    other = consortium.layout.node_dirs[3]
    args = _args(consortium, home, tmp_path, eth_key=str(other / "keys" / "eth-key.json"),
                 eth_key_password_file=str(other / "password"))  # fmt: skip
    _refused(args, home, "is not inst:hospital-1's registered address")


def test_init_says_which_password_it_tried_on_the_eth_key(consortium: InProcessConsortium, tmp_path: Path) -> None:
    home = tmp_path / "node"
    args = _args(consortium, home, tmp_path, eth_key_password_file="")
    args.remove("--eth-key-password-file")
    _refused(args, home, "tried the password from --password-file", "--eth-key-password-file")


def test_init_refuses_a_home_it_cannot_write(consortium: InProcessConsortium, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    home = afile / "node"
    result = runner.invoke(app, _args(consortium, home, tmp_path))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is not a folder" in result.stderr
    readonly = Path("/sys/fedledger-node-test")  # writable by mode for root, refused by the kernel
    result = runner.invoke(app, _args(consortium, readonly, tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # after any notes
    assert str(readonly) in error and result.stderr.endswith(error + "\n")


def test_reinit_keeps_the_registered_ethereum_key_unless_a_new_one_is_asked_for(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    c = consortium
    home = tmp_path / "node"
    registered = c.nodes[0].account.address
    first = runner.invoke(app, _args(c, home, tmp_path))
    assert first.exit_code == 0 and registered in first.stdout, first.output

    without_key = [x for x in _args(c, home, tmp_path, eth_key="", eth_key_password_file="")
                   if x not in ("--eth-key", "--eth-key-password-file")]  # fmt: skip
    again = runner.invoke(app, [*without_key, "--force"])
    assert again.exit_code == 0, again.output
    assert f"{registered} (kept key)" in again.stdout

    # A fresh home without --eth-key would make a key the ledger does not know: refused, by name.
    fresh = tmp_path / "fresh"
    _refused([*(str(fresh) if x == str(home) else x for x in without_key)], fresh,
             f"inst:hospital-1 is registered on ledger {c.layout.deployment.address} as {registered}")  # fmt: skip

    replaced = runner.invoke(app, [*without_key, "--force", "--new-eth-key"])
    assert replaced.exit_code == 0, replaced.output
    assert registered not in replaced.stdout and "(new key)" in replaced.stdout
    assert "is not registered on ledger" in replaced.stderr

    # A node whose key the ledger does not know says so at once instead of waiting on rounds.
    node_pw = ["--password-file", str(tmp_path / "new.pw")]
    trained = runner.invoke(app, ["node", "train", "-c", str(home), *node_pw])
    assert trained.exit_code == 2 and trained.stderr.count("\n") == 1, trained.output
    assert "is not inst:hospital-1's registered address" in trained.stderr
    assert runner.invoke(app, ["node", "status", "-c", str(home), *node_pw]).exit_code == 0  # looking is fine


def test_init_opens_freshly_issued_kgc_files_with_their_own_transport_passwords(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    c = consortium
    kgc = c.layout.root / "kgc"
    master = ["--master", str(kgc / "sign_master.key"), "--password-file", str(kgc / "password")]
    issued = tmp_path / "issued"
    extract = ["kgc", "extract", "--id", "inst:hospital-1", "--out", str(issued / "h1.key"), *master]
    issued.mkdir()
    assert runner.invoke(app, extract).exit_code == 0
    split = ["kgc", "split", "--chain-id", "31337", "--contract", c.layout.deployment.address, "-k", "3", "-n", "5",
             "--out", str(issued / "shares"), *master]  # fmt: skip
    assert runner.invoke(app, split).exit_code == 0
    fresh = {"sm9_key": str(issued / "h1.key"), "share": str(issued / "shares" / "share-1.key"),
             "threshold_public": str(issued / "shares" / "threshold_public.json")}  # fmt: skip

    home = tmp_path / "node"
    args = [x for x in _args(c, home, tmp_path, 0, **fresh, kgc_password_file="") if x != "--kgc-password-file"]
    wrong = [*args, "--share-password-file", str(issued / "shares" / "share-2.key.password")]
    _refused(wrong, home, "wrong password", "tried the KGC's transport password for --share")
    master_pw = [*args, "--sm9-key-password-file", str(kgc / "password")]  # the KGC's password opens no issued file
    _refused(master_pw, home, "wrong password", "--sm9-key")

    ok = runner.invoke(app, args)  # each file's <file>.password, found beside it
    assert ok.exit_code == 0, ok.output
    node_pw = "the node's new password"
    assert SignPrivateKey.load(home / "keys" / "sm9-sign-key.json", node_pw).identity == b"inst:hospital-1"
