"""Setting up a local consortium on disk: ledger, KGC keys, shares, node and aggregator configs.

This is what the KGC and each institution would do by hand with `fedledger kgc ...` and
`fedledger node init`; the demo and the end-to-end tests do it in one call. Every secret file is
written encrypted with mode 0600; each party gets its own random password file (0600). With ``tls``
(the default) the KGC also makes the consortium CA, the aggregator's server certificate for
127.0.0.1 and localhost, and each institution's client certificate bound to its address.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from aggregator.config import AggregatorConfig
from aggregator.config import save_config as save_aggregator_config
from fedledger.chain.deploy import Deployment, InstitutionSpec, deploy_ledger
from fedledger.chain.devaccounts import DevRoles, dev_roles
from fedledger.chain.keyfile import save_eth_key
from fedledger.cli.kgc_tls import CA_CERT, CA_KEY, LOCAL_HOSTS, TLS_DIR
from fedledger.envelope import RecipientKeys
from fedledger.fileio import SECRET_MODE, atomic_write_text
from fedledger.fl import default_spec, load_dataset
from fedledger.protocol.consortium import Consortium, Member, PublicMaterial, Reader, consortium_identity
from fedledger.protocol.readers import install_reader_keys
from fedledger.sm9 import SignMasterKey, extract_sign_key
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.sm9.threshold import split_key
from fedledger.tls import ConsortiumCA, IssuedCertificate
from fedledger.tls.party import PartyTLS, TLSFiles
from node.config import DataConfig, NodeConfig, TrainingConfig
from node.config import save_config as save_node_config

DEFAULT_RATES = (1.0, 0.5, 0.5, 0.25, 0.125)
AGGREGATOR_IDENTITY = "aggregator"  # the aggregator's SM9 encryption identity (it reads, never signs)


@dataclass(frozen=True)
class ConsortiumLayout:
    """Where everything was written."""

    root: Path
    deployment: Deployment
    store_spec: str
    aggregator_dir: Path
    aggregator_url: str
    node_dirs: tuple[Path, ...]
    master_public_key: Path
    consortium: Consortium
    dataset: str
    alpha: float
    seed: int
    tls: bool = True  # parties talk over mutual TLS (False: plain HTTP, as with --insecure-http)

    def password_file(self, party_dir: Path) -> Path:
        return party_dir / "password"


def demo_round_deadline(institutions: int) -> float:
    """The demo aggregator's round deadline: 300 s, and 60 s per institution beyond five."""
    return 300.0 + 60.0 * max(0, institutions - 5)


def _password(path: Path) -> str:
    password = secrets.token_urlsafe(24)
    atomic_write_text(path, password, SECRET_MODE)
    return password


def _install_tls(ca: ConsortiumCA, issued: IssuedCertificate, files: TLSFiles, password: str) -> None:
    PartyTLS(ca.certificate, issued.certificate, issued.private_key).save(files, password)


def setup_consortium(
    root: Path,
    rpc_url: str,
    *,
    rates: tuple[float, ...] = DEFAULT_RATES,
    threshold: int = 3,
    dataset: str = "digits",
    alpha: float = 0.5,
    seed: int = 0,
    epochs: int = 5,
    aggregator_port: int = 8700,
    tls: bool = True,
    roles: DevRoles | None = None,
    secure_aggregation: bool = False,
) -> ConsortiumLayout:
    """Deploy a ledger on ``rpc_url`` and write every party's files under ``root``.

    ``roles`` (funded accounts, one per rate) replaces the dev accounts, which cover at most 7 institutions.
    ``secure_aggregation`` turns the mode on in every party's config (the aggregator's and the nodes').
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    roles = roles or dev_roles(len(rates))
    names = [f"hospital-{i + 1}" for i in range(len(rates))]
    institutions = [InstitutionSpec(a.address, f"inst:{n}") for a, n in zip(roles.institutions, names, strict=True)]
    deployment = deploy_ledger(
        w3,
        roles.deployer,
        aggregator=roles.aggregator.address,
        institutions=institutions,
        threshold=threshold,
        rpc_url=rpc_url,
    )
    deployment.save(root / "deployment.json")

    kgc = root / "kgc"
    kgc.mkdir(parents=True, exist_ok=True)
    kgc_password = _password(kgc / "password")
    master = SignMasterKey.generate()
    master.save(kgc / "sign_master.key", kgc_password)
    mpk_path = kgc / "sign_master_public.pem"
    master.public_key.save(mpk_path)
    identity = consortium_identity(deployment.chain_id, deployment.address)
    shares, public = split_key(master, identity, threshold, len(rates))
    public_path = kgc / "threshold_public.json"
    public.save(public_path)
    # Each party's reader keys: the KGC issues the SM9 decryption key, the party makes its own ML-KEM key.
    enc_master = EncryptMasterKey.generate()
    enc_master.save(kgc / "enc_master.key", kgc_password)
    enc_master.public_key.save(kgc / "enc_master_public.pem")
    readers = {
        ident: RecipientKeys.generate(extract_encrypt_key(enc_master, ident))
        for ident in [*(inst.sm9_id for inst in institutions), AGGREGATOR_IDENTITY]
    }
    consortium = Consortium(
        deployment.chain_id,
        deployment.address,
        identity,
        threshold,
        tuple(
            Member(name, inst.address, inst.sm9_id, i + 1, readers[inst.sm9_id].public.mlkem_public.hex())
            for i, (name, inst) in enumerate(zip(names, institutions, strict=True))
        ),
        enc_master.public_key.to_der().hex(),
        Reader("aggregator", AGGREGATOR_IDENTITY, readers[AGGREGATOR_IDENTITY].public.mlkem_public.hex()),
    )
    roster = kgc / "consortium.json"
    consortium.save(roster)
    material = PublicMaterial(mpk_path, public_path, roster)

    store_spec = f"local:{root / 'store'}"
    aggregator_url = f"{'https' if tls else 'http'}://127.0.0.1:{aggregator_port}"
    ca = ConsortiumCA.generate()
    (kgc / TLS_DIR).mkdir(exist_ok=True)
    ca.save(kgc / TLS_DIR / CA_CERT, kgc / TLS_DIR / CA_KEY, kgc_password)  # where `kgc setup` keeps it
    data = load_dataset(dataset)
    node_dirs = []
    for i, (name, rate) in enumerate(zip(names, rates, strict=True)):
        home = root / name
        keys = home / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        password = _password(home / "password")
        extract_sign_key(master, institutions[i].sm9_id).save(keys / "sm9-sign-key.json", password)
        shares[i].save(keys / "consortium-share.json", password)
        save_eth_key(keys / "eth-key.json", roles.institutions[i], password)
        install_reader_keys(readers[institutions[i].sm9_id], keys, password)
        material.install(keys)
        node_config = NodeConfig(
            name=name,
            sm9_identity=institutions[i].sm9_id,
            width_rate=rate,
            rpc_url=rpc_url,
            contract=deployment.address,
            aggregator_url=aggregator_url,
            store=store_spec,
            data=DataConfig(source=dataset, partitions=len(rates), index=i, scheme="dirichlet", alpha=alpha, seed=seed),
            training=TrainingConfig(epochs=epochs, seed=seed + i),
            secure_aggregation=secure_aggregation,
        )
        member = ca.issue_member(deployment.chain_id, institutions[i].address, institutions[i].sm9_id, name)
        _install_tls(ca, member, node_config.tls_files(home), password)
        save_node_config(node_config, home)
        node_dirs.append(home)

    agg = root / "aggregator"
    (agg / "keys").mkdir(parents=True, exist_ok=True)
    agg_password = _password(agg / "password")
    save_eth_key(agg / "keys" / "eth-key.json", roles.aggregator, agg_password)
    install_reader_keys(readers[AGGREGATOR_IDENTITY], agg / "keys", agg_password)
    material.install(agg / "keys")
    spec = default_spec(data.input_shape, data.num_classes)
    agg_config = AggregatorConfig(
        rpc_url=rpc_url,
        contract=deployment.address,
        store=store_spec,
        port=aggregator_port,
        model=spec.to_dict(),
        init_seed=seed,
        # generous: on a loaded machine 5 node processes training at once must not miss the round
        round_deadline_seconds=demo_round_deadline(len(rates)),
        secure_aggregation=secure_aggregation,
    )
    _install_tls(ca, ca.issue_server(LOCAL_HOSTS), agg_config.tls_files(agg), agg_password)
    save_aggregator_config(agg_config, agg)
    return ConsortiumLayout(
        root, deployment, store_spec, agg, aggregator_url, tuple(node_dirs), mpk_path, consortium, dataset, alpha,
        seed, tls,
    )  # fmt: skip
