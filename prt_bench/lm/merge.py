"""Weight-space task arithmetic (Ilharco et al. 2023): ``θ = θ_base + Σ_i w_i (θ_ft,i − θ_base)``,
the baseline the reward arithmetic of PRT is measured against.  It needs the FT models and the
base to share every parameter name and shape -- one architecture, one size -- which is the point
of the comparison: summed rewards need neither."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence


def task_arithmetic(base: str | Path, fts: Sequence[str | Path], weights: Sequence[float], out: str | Path) -> Path:
    """Write the merged checkpoint (safetensors, the base's config and tokenizer) to ``out``."""
    import torch
    from safetensors.torch import load_file, save_file

    from prt_bench.lm.load import is_adapter_dir

    if len(fts) != len(weights) or not fts:
        raise ValueError(f"need one weight per FT model, got {len(fts)} models and {len(weights)} weights")
    for path in (base, *fts):
        if is_adapter_dir(str(path)):
            raise ValueError(f"task arithmetic merges full checkpoints; {path} is a LoRA adapter")

    def weights_of(folder: str | Path) -> dict[str, torch.Tensor]:
        files = sorted(Path(folder).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder}: no safetensors weights")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state

    theta = weights_of(base)
    merged = {k: v.float().clone() for k, v in theta.items()}
    for w, ft in zip(weights, fts):
        other = weights_of(ft)
        if set(other) != set(theta) or any(other[k].shape != theta[k].shape for k in theta):
            raise ValueError(f"task arithmetic needs one architecture: {ft} and {base} differ in their parameters")
        for k in merged:
            merged[k] += float(w) * (other[k].float() - theta[k].float())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(base).iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".safetensors.index.json")) \
                and f.name != "prt_manifest.json":
            shutil.copy2(f, out / f.name)
    save_file({k: v.to(theta[k].dtype).contiguous() for k, v in merged.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out
