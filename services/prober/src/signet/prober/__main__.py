"""``python -m signet.prober``: the prober (``--once`` for one round)."""

from signet.prober.server import main

main()
