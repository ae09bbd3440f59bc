"""Secure aggregation over sub-models of different widths (Bonawitz et al. 2017 / SecAgg+ style).

Pure math and protocol messages: fixed-point ring encoding (:mod:`ring`), global positions from
public index maps (:mod:`layout`), the AES-CTR mask generator (:mod:`prg`), Shamir sharing
(:mod:`shamir`), hybrid X25519 + ML-KEM-768 keys (:mod:`hybrid`), canonical messages
(:mod:`messages`), the member's phases (:mod:`member`) and unmasking from published messages
(:mod:`aggregate`). No chain, no store, no ``fedledger.fl`` import. See docs/secagg.md.
"""
