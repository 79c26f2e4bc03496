"""``python -m signet.evidence``."""

from signet.evidence.server import main

main()
