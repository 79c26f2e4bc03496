"""``python -m bench.chaos``: the chaos run (see :mod:`bench.chaos.run`)."""

from __future__ import annotations

from bench.chaos.run import main

if __name__ == "__main__":
    raise SystemExit(main())
