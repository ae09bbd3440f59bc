"""A party's kit: the folder it receives from provisioning, and the names of everything in it.

``kits/<party>/`` holds ``kit.toml`` (role, name, the ledger it belongs to), a copy of the plan,
``keys/`` (its secrets, encrypted under its own transport password, among them a reader's keys
that open sealed model files; the public files every party shares) and a ``README`` with the one
command that starts it. The transport password is written beside the kit as
``kits/<party>.password`` (0600), so the folder and the password travel apart.
The kit is the party's home: the role writes its config and state into it at start.
"""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from fedledger.consortium.plan import Plan, PlanError, load_plan
from fedledger.fileio import SECRET_MODE, atomic_write_text
from fedledger.protocol.consortium import PublicMaterial
from fedledger.protocol.readers import READER_CARD_FILE, READER_KEYS_FILE

KIT_FILE = "kit.toml"
PLAN_FILE = "consortium.toml"
ROSTER_FILE = "consortium.json"
DEPLOYMENT_FILE = "deployment.json"
KEYS = "keys"
ETH_KEY = f"{KEYS}/eth-key.json"
SM9_KEY = f"{KEYS}/sm9-sign-key.json"
SHARE = f"{KEYS}/consortium-share.json"
MASTER_KEY = f"{KEYS}/sign_master.key"
ENC_MASTER_KEY = f"{KEYS}/enc_master.key"  # the KGC kit's alone: SM9 encryption master key ke
READER_KEYS = f"{KEYS}/{READER_KEYS_FILE}"  # node and aggregator kits: SM9 decryption key + ML-KEM-768 seed
READER_CARD = f"{KEYS}/{READER_CARD_FILE}"  # their public card, as the roster files it
MPK_NAME, THRESHOLD_NAME, ROSTER_NAME = PublicMaterial.NAMES
ROLES = ("node", "aggregator", "kgc", "deployer")


class KitError(PlanError):
    """A kit is missing, of the wrong role, or incomplete; the message names the kit and the fix."""


@dataclass(frozen=True)
class Kit:
    """One party's kit on disk."""

    folder: Path
    role: str
    name: str
    chain_id: int
    contract: str
    plan: Plan

    def require(self, role: str) -> Kit:
        if self.role != role:
            raise KitError(f"{self.folder} is the {self.role} kit of {self.name!r}, not a {role} kit")
        return self


def password_file(kits: Path, party: str) -> Path:
    """Where a party's transport password lives: beside its kit, never inside it."""
    return kits / f"{party}.password"


def new_password(kits: Path, party: str) -> str:
    """Reuse the party's transport password if it has one (re-issued kits open as before), else make one."""
    path = password_file(kits, party)
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()[0]
    password = secrets.token_urlsafe(24)
    atomic_write_text(path, password + "\n", SECRET_MODE)
    return password


def write_kit_file(folder: Path, role: str, name: str, chain_id: int, contract: str, plan_text: str) -> None:
    """Write ``kit.toml`` and the plan copy (public: no secret is in either)."""
    folder.mkdir(parents=True, exist_ok=True)
    body = {"role": role, "name": name, "chain_id": chain_id, "contract": contract}
    atomic_write_text(folder / KIT_FILE, tomli_w.dumps(body))
    atomic_write_text(folder / PLAN_FILE, plan_text)


def load_kit(folder: str | Path) -> Kit:
    """Open a kit folder (or its kit.toml); KitError saying what is wrong."""
    path = Path(folder)
    if path.name == KIT_FILE:
        path = path.parent
    try:
        raw = tomllib.loads((path / KIT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{path} is not a kit (no {KIT_FILE}): give the folder `consortium provision` made") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KitError(f"cannot read {path / KIT_FILE}: {exc}") from None
    try:
        role, name = str(raw["role"]), str(raw["name"])
        chain_id, contract = int(raw["chain_id"]), str(raw["contract"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KitError(f"{path / KIT_FILE} lacks {exc}: provision the kit again") from None
    if role not in ROLES:
        raise KitError(f"{path / KIT_FILE}: unknown role {role!r}")
    return Kit(path.resolve(), role, name, chain_id, contract, load_plan(path / PLAN_FILE))


def write_readme(folder: Path, lines: list[str]) -> None:
    atomic_write_text(folder / "README", "\n".join(lines).rstrip() + "\n")
