"""``python -m signet.notify``."""

from signet.notify.server import main

main()
