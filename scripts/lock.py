"""Re-resolve requirements.lock from every workspace member's third-party dependencies.

The members depend on each other by name (``signet-common``), which no index serves, so
their own requirements are gathered here, the ``signet-*`` ones dropped, and the rest
resolved together with the root's development extras into one hashed lock file.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> list[str]:
    """Third-party requirements of the root (with extras) and every member."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs: list[str] = list(root["project"].get("dependencies", []))
    for extra in root["project"].get("optional-dependencies", {}).values():
        reqs.extend(extra)
    for member in root["tool"]["signet"]["workspace"]["members"]:
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        reqs.extend(project.get("dependencies", []))
    return sorted({r for r in reqs if not r.lower().startswith("signet-")})


def main() -> int:
    """Write the gathered requirements to a scratch file and compile it with uv."""
    uv = ROOT / ".venv" / "bin" / "uv"
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as spec:
        spec.write("\n".join(requirements()) + "\n")
    cmd = [
        str(uv), "pip", "compile", spec.name, "--generate-hashes", "--python-version", "3.11",
        "--no-header", "--no-annotate", "-o", str(ROOT / "requirements.lock"),
    ]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
