"""The KGC's issuing work for a plan: keys, the k-of-n split, the roster, and every party's kit.

Used once by ``provision`` and again by every membership change (a new split for the new n, a new
roster, updated kits). Every secret is encrypted under the transport password of the one party it
is for; public files are the same in every kit.

Sealing (docs/crypto.md): each node and the aggregator gets reader keys, its SM9 decryption key
and an ML-KEM-768 key pair, and the roster publishes the SM9 encryption master public key and
every reader's card, so a provisioned consortium seals every model file from its first round.
The encryption master key stays in the KGC's kit; a removed member's card leaves the roster.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from fedledger.chain.keyfile import save_eth_key
from fedledger.consortium import kits as k
from fedledger.consortium.plan import InstitutionPlan, Plan
from fedledger.envelope import EnvelopeError, Recipient, RecipientKeys
from fedledger.fileio import PUBLIC_MODE, atomic_write_bytes
from fedledger.protocol.consortium import Consortium, Member, PublicMaterial, Reader, consortium_identity
from fedledger.protocol.readers import install_reader_keys
from fedledger.sm9 import SignMasterKey, extract_sign_key
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.sm9.threshold import KeyShare, split_key
from fedledger.tls import ConsortiumCA
from fedledger.tls.ca import IssuedCertificate
from fedledger.tls.files import write_certificate
from fedledger.tls.settings import TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE

CA_KEY_FILE = f"{k.KEYS}/tls-ca-key.pem"
AGGREGATOR_READER_IDENTITY = "aggregator"  # the aggregator's SM9 encryption identity (it reads, never signs)


def create_address(sender: str, nonce: int) -> str:
    """The address a contract created by ``sender``'s transaction number ``nonce`` gets (CREATE)."""
    import rlp

    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def new_account() -> LocalAccount:
    return Account.from_key(secrets.token_bytes(32))


@dataclass
class Issuer:
    """The KGC at work on a kits folder: holds the master key in memory only."""

    kits: Path
    plan: Plan
    plan_text: str
    master: SignMasterKey
    chain_id: int
    contract: str
    ca: ConsortiumCA
    enc_master: EncryptMasterKey

    @property
    def identity(self) -> str:
        return consortium_identity(self.chain_id, self.contract)

    def reader_card(self, party: str, identity: str) -> Recipient:
        """The card of ``party``'s reader keys; issues them into its kit first when it has none (or
        only another identity's): the SM9 decryption key for ``identity`` and a fresh ML-KEM-768
        pair, under the party's own password. A re-issue keeps the keys a kit already holds."""
        folder = self.kits / party
        try:
            card = Recipient.from_json((folder / k.READER_CARD).read_text(encoding="utf-8"))
            if (folder / k.READER_KEYS).is_file() and card.identity == identity.encode("utf-8"):
                return card
        except (OSError, ValueError, EnvelopeError):
            pass  # no card yet, or an unreadable one: issue the keys anew
        keys = RecipientKeys.generate(extract_encrypt_key(self.enc_master, identity))
        (folder / k.KEYS).mkdir(parents=True, exist_ok=True)
        install_reader_keys(keys, folder / k.KEYS, k.new_password(self.kits, party))
        return keys.public

    def split(self, members: list[tuple[InstitutionPlan, str]]) -> tuple[list[KeyShare], PublicMaterial, Consortium]:
        """A fresh k-of-n split of the consortium key for ``members`` (plan entry, address), its
        public data and the roster with every reader's card (issuing reader keys a kit lacks),
        written to the KGC kit (the copies other kits receive)."""
        shares, public = split_key(self.master, self.identity, self.plan.k, len(members))
        cards = {inst.name: self.reader_card(inst.name, inst.identity).mlkem_public.hex() for inst, _ in members}
        aggregator_card = self.reader_card("aggregator", AGGREGATOR_READER_IDENTITY).mlkem_public.hex()
        roster = Consortium(
            self.chain_id,
            self.contract,
            self.identity,
            self.plan.k,
            tuple(
                Member(inst.name, to_checksum_address(address), inst.identity, i + 1, cards[inst.name])
                for i, (inst, address) in enumerate(members)
            ),
            self.enc_master.public_key.to_der().hex(),
            Reader("aggregator", AGGREGATOR_READER_IDENTITY, aggregator_card),
        )
        keys = self.kits / "kgc" / k.KEYS
        keys.mkdir(parents=True, exist_ok=True)
        material = PublicMaterial(keys / k.MPK_NAME, keys / k.THRESHOLD_NAME, keys / k.ROSTER_NAME)
        atomic_write_bytes(material.master_public_key, self.master.public_key.to_pem().encode("ascii"), PUBLIC_MODE)
        atomic_write_bytes(material.threshold_public, (public.to_json() + "\n").encode("utf-8"), PUBLIC_MODE)
        atomic_write_bytes(material.roster, roster_bytes(roster), PUBLIC_MODE)
        atomic_write_bytes(self.kits / k.ROSTER_FILE, roster_bytes(roster), PUBLIC_MODE)
        return shares, material, roster

    def member_account(self, name: str, account: LocalAccount) -> None:
        """A new member's Ethereum key, in its kit under its own password (before its address is approved)."""
        password = k.new_password(self.kits, name)
        (self.kits / name / k.KEYS).mkdir(parents=True, exist_ok=True)
        save_eth_key(self.kits / name / k.ETH_KEY, account, password)

    def _tls(self, folder: Path, password: str, issue: Callable[[], IssuedCertificate]) -> None:
        """The party's TLS certificate and key (issued once) and the consortium CA it trusts."""
        if not (folder / TLS_CERT_FILE).is_file():
            issue().save(folder / TLS_CERT_FILE, folder / TLS_KEY_FILE, password)
        write_certificate(folder / TLS_CA_FILE, self.ca.certificate)

    def node_kit(
        self,
        inst: InstitutionPlan,
        address: str,
        share: KeyShare,
        material: PublicMaterial,
        account: LocalAccount | None,
    ) -> Path:
        """Write (or update) an institution's kit; ``account`` None keeps the Ethereum key it has."""
        folder = self.kits / inst.name
        password = k.new_password(self.kits, inst.name)
        k.write_kit_file(folder, "node", inst.name, self.chain_id, self.contract, self.plan_text)
        (folder / k.KEYS).mkdir(parents=True, exist_ok=True)
        if account is not None:
            save_eth_key(folder / k.ETH_KEY, account, password)
        if not (folder / k.SM9_KEY).is_file():
            extract_sign_key(self.master, inst.identity).save(folder / k.SM9_KEY, password)
        self._tls(folder, password, lambda: self.ca.issue_member(self.chain_id, address, inst.identity, inst.name))
        share.save(folder / k.SHARE, password)
        material.install(folder / k.KEYS)
        data_hint = "" if inst.data.path else " --data PATH"
        k.write_readme(
            folder,
            [
                f"Kit of {inst.name} ({inst.identity}) in consortium {self.plan.name}, ledger {self.contract}.",
                "",
                "Start the node from the folder that holds this kit and its password file (the kit",
                "becomes the node's home: keep it private):",
                "",
                f"    fedledger node start {folder.name} --password-file {inst.name}.password{data_hint}",
                "",
                f"The password file {inst.name}.password comes separately from the consortium's operator.",
                f"Data: {inst.data.kind} at {inst.data.path or '(give it with --data)'}; it is checked against",
                "the plan's task at start and before every round.",
            ],
        )
        return folder

    def public_kit(self, role: str, material: PublicMaterial, account: LocalAccount | None, lines: list[str]) -> Path:
        """Write (or update) the aggregator's or the deployer's kit."""
        folder = self.kits / role
        password = k.new_password(self.kits, role)
        k.write_kit_file(folder, role, role, self.chain_id, self.contract, self.plan_text)
        if account is not None:
            (folder / k.KEYS).mkdir(parents=True, exist_ok=True)
            save_eth_key(folder / k.ETH_KEY, account, password)
        material.install(folder / k.KEYS)
        if role == "aggregator":
            hosts = list(dict.fromkeys([urlparse(self.plan.aggregator.url).hostname or "", "127.0.0.1", "localhost"]))
            self._tls(folder, password, lambda: self.ca.issue_server(hosts))
        k.write_readme(folder, lines)
        return folder

    def kgc_kit(self) -> Path:
        folder = self.kits / "kgc"
        password = k.new_password(self.kits, "kgc")
        k.write_kit_file(folder, "kgc", "kgc", self.chain_id, self.contract, self.plan_text)
        if not (folder / k.MASTER_KEY).is_file():
            self.master.save(folder / k.MASTER_KEY, password)
        if not (folder / k.ENC_MASTER_KEY).is_file():
            self.enc_master.save(folder / k.ENC_MASTER_KEY, password)
        if not (folder / CA_KEY_FILE).is_file():
            self.ca.save(folder / TLS_CA_FILE, folder / CA_KEY_FILE, password)
        k.write_readme(
            folder,
            [
                f"The KGC's kit of consortium {self.plan.name}: the SM9 signing and encryption master keys",
                "and the TLS CA's key (encrypted, kgc.password). Keep it offline. It re-issues keys and",
                "kits when members join or leave:",
                "",
                "    fedledger consortium add-member consortium.toml --kits kits --name NEW",
                "    fedledger consortium remove-member consortium.toml --kits kits --name OLD",
            ],
        )
        return folder


def roster_bytes(roster: Consortium) -> bytes:
    return (json.dumps(roster.to_dict(), indent=2) + "\n").encode("utf-8")


def aggregator_readme(plan: Plan, contract: str) -> list[str]:
    return [
        f"Kit of the aggregator of consortium {plan.name}, ledger {contract}.",
        "",
        "Start it from the folder that holds this kit and its password file (the kit becomes its home):",
        "",
        "    fedledger aggregator start aggregator --password-file aggregator.password --rounds 10",
        "",
        f"Nodes reach it at {plan.aggregator.url}; it listens on {plan.aggregator.bind_host}:{plan.aggregator.port}.",
        "It builds the model from the plan's task and needs no data.",
    ]


def deployer_readme(plan: Plan, contract: str) -> list[str]:
    return [
        f"Kit of the account that deploys the ledger of consortium {plan.name}.",
        f"Its first transaction creates the ledger at {contract} (every kit already names that address).",
        "",
        "    fedledger chain deploy --plan consortium.toml --kits kits",
        "",
        "On a local dev chain this funds every account; on a real chain it says how much each needs.",
    ]
