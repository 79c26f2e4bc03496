"""``python -m signet.ca_gateway``."""

from signet.ca_gateway.server import main

main()
