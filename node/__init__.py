"""The institution's role: its CLI and its side of the round protocol.

A node trains a sub-model sized to its hardware on data that never leaves the institution,
submits the update to the ledger, and co-signs round records it has checked.
"""
