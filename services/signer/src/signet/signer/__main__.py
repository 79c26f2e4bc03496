"""``python -m signet.signer``."""

from signet.signer.server import main

main()
