"""``python -m signet.identity``."""

from signet.identity.server import main

main()
