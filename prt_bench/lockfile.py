"""The environment lock (requirements/cpu.lock, requirements/gpu.lock): what it pins, and whether
the running interpreter's packages are exactly those.

Results are only comparable with the reference when they come from the same versions, so the
setup script and the test suite both check the installed packages against the lock and name
every difference.  ``python -m prt_bench.lockfile check [LOCK]`` exits 1 on any.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from prt_bench.io import REPO_ROOT

LOCKS = {"cpu": REPO_ROOT / "requirements" / "cpu.lock", "gpu": REPO_ROOT / "requirements" / "gpu.lock"}
# packages that may be installed beside the lock (scripts/models.sh), at exactly these versions
OPTIONAL = REPO_ROOT / "requirements" / "models.lock"
# installed beside the lock on purpose: the project itself (editable) and the venv's own pip
NOT_LOCKED = {"prt-bench", "pip"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503 names: `Open_Clip.torch` and `open-clip-torch` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """{normalized name: exact version} of every `name==version` line of a requirements lock."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            pins[normalize(m.group(1))] = m.group(2)
    if not pins:
        raise ValueError(f"{path}: no 'name==version' lines; is this a lock file?")
    return pins


def installed() -> dict[str, str]:
    """{normalized name: version} of the distributions the running interpreter sees."""
    return {normalize(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def differences(pins: dict[str, str], present: dict[str, str], optional: dict[str, str] | None = None) -> list[str]:
    """One line per package that is missing, at another version, or installed but not locked
    (``optional``: packages that may be absent, but when installed must be at their version)."""
    out = []
    optional = {k: v for k, v in (optional or {}).items() if k not in pins}
    for name, version in sorted(pins.items()):
        have = present.get(name)
        if have is None:
            out.append(f"{name}: locked {version}, not installed")
        elif have != version:
            out.append(f"{name}: locked {version}, installed {have}")
    for name in sorted(set(present) - set(pins) - NOT_LOCKED):
        if name not in optional:
            out.append(f"{name}: installed {present[name]}, not in the lock")
        elif present[name] != optional[name]:
            out.append(f"{name}: installed {present[name]}, {OPTIONAL.name} has {optional[name]}")
    return out


def optional_pins() -> dict[str, str]:
    return read_lock(OPTIONAL) if OPTIONAL.is_file() else {}


def applicable_lock() -> Path:
    """The lock this environment was set up from (scripts/setup.sh records it), else the one its
    torch build implies (a `+cpu` build: cpu.lock)."""
    stamp = Path(sys.prefix) / ".prt-bench-setup"
    if stamp.is_file():
        fields = stamp.read_text(encoding="utf-8").split()
        if len(fields) == 2:
            path = Path(fields[1])
            return path if path.is_absolute() else REPO_ROOT / path
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return LOCKS["cpu"]
    return LOCKS["cpu"] if torch_version.endswith("+cpu") else LOCKS["gpu"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "check" or len(argv) > 2:
        print("usage: python -m prt_bench.lockfile check [LOCK]", file=sys.stderr)
        return 2
    lock = Path(argv[1]) if len(argv) == 2 else applicable_lock()
    diffs = differences(read_lock(lock), installed(), optional_pins())
    if diffs:
        print(f"the installed packages differ from {lock} in {len(diffs)} places "
              "(run `make setup` to install the lock; `make lock` changes it):", file=sys.stderr)
        for line in diffs:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
