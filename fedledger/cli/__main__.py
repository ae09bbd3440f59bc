"""``python -m fedledger.cli`` runs the same CLI as the ``fedledger`` console script."""

from fedledger.cli import main

main()
