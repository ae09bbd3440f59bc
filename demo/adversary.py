"""A misbehaving institution: a member's real keys used against the rules.

The contract accepts whatever a registered member submits, so everything downstream must cope:
``MisbehavingMember`` signs any entry with the member's own SM9 key (or one it stole) and sends it
from its registered address. ``fedledger demo --adversary KIND`` runs one as hospital-5's process
(``python -m demo.adversary``), and the adversarial tests drive it in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fedledger.digests import sm3
from fedledger.fl import load_update, save_update
from fedledger.protocol import UpdateEntry
from fedledger.sm9 import SignPrivateKey, sign
from fedledger.widths import width_to_ppm
from node.participant import NodeContext, train_for_round

log = logging.getLogger(__name__)

# A well-formed CIDv0 nobody stored: "content unavailable" for anyone who fetches it.
UNSTORED_CID = "QmTz3oc4gdpRMKP2sdGUPZTAGRngqjsi99BPoztyP53JMM"


@dataclass
class MisbehavingMember:
    """One member acting against the rules with its real keys: the contract cannot tell."""

    node: NodeContext

    @property
    def address(self) -> str:
        return self.node.account.address.lower()

    def _store(self, data: bytes) -> str:
        """Put ``data`` into the store as any member would: sealed to the round's readers (plaintext
        when the federation does not seal)."""
        import tempfile

        from fedledger.protocol.readers import readers_now

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "update.bin"
            path.write_bytes(data)
            return self.node.vault.put(path, readers_now(self.node.ledger, self.node.consortium))[0]

    def trained(self, round_index: int) -> Path:
        """An honestly trained update for ``round_index``: the raw material most attacks start from."""
        return train_for_round(self.node, round_index).path

    def submit(
        self,
        round_index: int,
        content: bytes | Path | None,
        *,
        cid: str | None = None,
        digest: bytes | None = None,
        num_samples: int | None = None,
        width_ppm: int | None = None,
        mapping_digest: bytes | None = None,
        sign_with: SignPrivateKey | None = None,
    ) -> UpdateEntry:
        """Store ``content`` (None: store nothing) and submit an entry for it; any field may be given.

        Fields not given come from the file's own metadata when it is a readable update, else from
        harmless defaults. The entry is signed with the member's own SM9 key unless ``sign_with``.
        """
        samples, ppm, mapping = 10, width_to_ppm(self.node.width_rate), sm3(b"an index map")
        if isinstance(content, Path):
            try:
                _, meta = load_update(content)
                samples, ppm, mapping = meta.num_samples, width_to_ppm(meta.width_rate), meta.mapping_digest
            except ValueError:
                pass
            data = content.read_bytes()
        else:
            data = content or b""
        ledger = self.node.ledger
        entry = UpdateEntry(
            chain_id=ledger.chain_id,
            contract=ledger.address,
            round=round_index,
            institution=self.node.account.address,
            cid=cid if cid is not None else (self._store(data) if content is not None else UNSTORED_CID),
            digest=sm3(data) if digest is None else digest,
            num_samples=samples if num_samples is None else num_samples,
            width_ppm=ppm if width_ppm is None else width_ppm,
            mapping_digest=mapping if mapping_digest is None else mapping_digest,
        )
        signature = sign(sign_with or self.node.sm9_key, entry.message()).to_der()
        ledger.submit_update(
            self.node.account,
            round_index,
            entry.cid,
            entry.digest,
            entry.mapping_digest,
            entry.num_samples,
            entry.width_ppm,
            signature,
        )
        return entry


def claims_a_billion_samples(member: MisbehavingMember, round_index: int) -> UpdateEntry:
    """A real update whose file claims 10^9 samples, under a ledger entry with the true count."""
    trained = train_for_round(member.node, round_index)
    state, meta = load_update(trained.path)
    out = trained.path.with_name("billion-samples.safetensors")
    save_update(out, state, dataclasses.replace(meta, num_samples=10**9))
    return member.submit(round_index, out, num_samples=trained.num_samples)


def nan_weights(member: MisbehavingMember, round_index: int) -> UpdateEntry:
    """A real update with a NaN and an Inf in its first tensor."""
    path = member.trained(round_index)
    state, meta = load_update(path)
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = math.nan
    state[name].view(-1)[-1] = math.inf
    out = path.with_name("nan.safetensors")
    save_update(out, state, meta)
    return member.submit(round_index, out)


def blank_cid(member: MisbehavingMember, round_index: int) -> UpdateEntry:
    """An entry whose CID is one space: the contract checks only its length."""
    return member.submit(round_index, None, cid=" ")


KINDS: dict[str, Callable[[MisbehavingMember, int], UpdateEntry]] = {
    "billion-samples": claims_a_billion_samples,
    "nan": nan_weights,
    "blank-cid": blank_cid,
}
DEFAULT_KIND = "billion-samples"


def rejection_reasons(lines: Iterable[str], address: str) -> list[str]:
    """The aggregator's log lines that reject (or leave out) ``address``'s entries, in order."""
    wanted = re.compile(r"reject|left out", re.IGNORECASE)
    return [line.strip() for line in lines if address.lower() in line.lower() and wanted.search(line)]


def run_adversary(ctx: NodeContext, kind: str, rounds: int, poll: float, stop: threading.Event) -> int:
    """Misbehave as ``kind`` in each of ``rounds`` rounds, never sign; returns the entries submitted."""
    member, attack, submitted = MisbehavingMember(ctx), KINDS[kind], 0
    for r in range(rounds):
        while not stop.is_set():
            state = ctx.ledger.round_state()
            if state.started and (state.round > r or (state.round == r and not state.open)):
                break  # round r is over
            if (
                state.started
                and state.open
                and state.round == r
                and not ctx.ledger.has_submitted(r, ctx.account.address)
            ):
                entry = attack(member, r)
                submitted += 1
                log.warning("%s (adversary %s): submitted round %d entry %s", ctx.name, kind, r, entry.cid)
            stop.wait(poll)
    return submitted


def main(argv: list[str] | None = None) -> int:
    from demo.in_process import password_of
    from node.config import load_config
    from node.context import build_context

    parser = argparse.ArgumentParser(prog="python -m demo.adversary", description=__doc__)
    parser.add_argument("-c", "--home", type=Path, required=True, help="the member's node folder")
    parser.add_argument("--kind", choices=sorted(KINDS), default=DEFAULT_KIND)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, base = load_config(args.home)
    ctx = build_context(config, base, password_of(args.home), reach_aggregator=False)  # it never signs
    run_adversary(ctx, args.kind, args.rounds, args.poll, threading.Event())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
