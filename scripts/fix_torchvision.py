"""Make torchvision importable next to a CPU-only torch, only where it is broken.

The only torchvision wheel for torch 2.13 on the build machines is a CUDA build whose
compiled ops cannot load against CPU torch.  Its `_meta_registrations.py` then registers
fake kernels for `torchvision::nms` and `torchvision::qnms` unconditionally, which raises
`operator torchvision::nms does not exist` on `import torchvision` (and so breaks
open_clip and parts of transformers).  Guarding those two registrations with
`torchvision.extension._has_ops()`, as the other registrations in that file already are,
fixes the import; nms/roi ops stay unavailable, which prt-bench does not use.  On a machine
where torchvision imports (a GPU box with a matching build) nothing is touched.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

GUARD = 'if torchvision.extension._has_ops() else (lambda fn: fn))'


def imports_cleanly() -> tuple[bool, str]:
    out = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    return out.returncode == 0, out.stderr


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        print("torchvision is not installed; nothing to fix")
        return 0
    ok, err = imports_cleanly()
    if ok:
        return 0
    if "torchvision::nms does not exist" not in err:
        print(f"torchvision fails to import for another reason:\n{err}", file=sys.stderr)
        return 1
    path = Path(spec.origin).parent / "_meta_registrations.py"
    text = path.read_text()
    for op in ("nms", "qnms"):
        plain = f'@torch.library.register_fake("torchvision::{op}")'
        text = text.replace(plain + "\n", f"@({plain[1:]} {GUARD}\n")
    path.write_text(text)
    ok, err = imports_cleanly()
    if not ok:
        print(f"patched {path} but torchvision still fails to import:\n{err}", file=sys.stderr)
        return 1
    print(f"patched {path}: torchvision imports (its compiled nms/roi ops stay unavailable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
