"""``python -m settlement.verify_bundle DIR [--json]``: recompute an epoch's bundle from its
signed events alone and compare the statement, its hash and its root with the bundle's.

Needs this package and its dependencies only: no store, no settings, no network. Prints one
line (or the report as JSON) and exits 0 when the bundle holds, 1 when it does not, 2 on a
usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from settlement.bundle import verify_bundle

USAGE = "usage: python -m settlement.verify_bundle DIR [--json]"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    if len(paths) != 1 or paths[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    directory = Path(paths[0])
    if not directory.is_dir():
        print(f"bundle FAILED: {directory} is not a folder", file=sys.stdout)
        return 1
    report = verify_bundle(directory)
    print(json.dumps(report.to_json(), indent=2) if as_json else report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
