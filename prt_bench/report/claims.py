"""The paper's claims, checked against a suite's numbers: pass, fail, or no data.

"≈" uses one tolerance throughout: two results agree when they differ by at most
max(TOL_ABS, 2·sqrt(e1² + e2²)), where e is each result's error bar (std over seeds, else
the evaluator's standard error; 0 when unknown).  TOL_ABS is 3 accuracy points, the size
of difference the paper treats as "comparable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prt_bench.report.results import fmt_alpha
from prt_bench.report.tables import Lookup, Value

TOL_ABS = 0.03
PASS, FAIL, NO_DATA = "pass", "fail", "no data"


@dataclass
class Claim:
    title: str
    rule: str  # how it is decided, in words
    checks: list[tuple[bool, str]] = field(default_factory=list)  # (holds, the numbers behind it)

    @property
    def status(self) -> str:
        if not self.checks:
            return NO_DATA
        return PASS if all(ok for ok, _ in self.checks) else FAIL

    @property
    def summary(self) -> str:
        if not self.checks:
            return "no cells to decide it"
        held = sum(ok for ok, _ in self.checks)
        return f"{held} of {len(self.checks)} comparisons hold"


def tolerance(a: Value, b: Value) -> float:
    ea = 0.0 if math.isnan(a.err) else a.err
    eb = 0.0 if math.isnan(b.err) else b.err
    return max(TOL_ABS, 2.0 * math.sqrt(ea * ea + eb * eb))


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def check_claims(lk: Lookup) -> list[Claim]:
    same = Claim(
        "PRT on the training base ≈ FT",
        f"|PRT(s→s) − FT(s)| ≤ tol, tol = max({TOL_ABS}, 2·combined error bar)",
    )
    beats = Claim("PRT on swapped bases beats each base alone", "PRT(s→t) > base alone(t) for every t ≠ s")
    bigger = Claim(
        "Bigger/newer targets score higher",
        "for upscaling/update transfers: base alone(t) > base alone(s) and PRT(s→t) > PRT(s→s) (else FT(s))",
    )
    eft = Claim("PRT ≈ EFT", "PRT(s→t) ≥ EFT(s→t) − tol for every t ≠ s (comparable or better)")
    alpha = Claim(
        "α lowers reward-only accuracy without lowering PRT accuracy",
        "from the smallest to the largest α: reward only drops, and PRT(s→t) ≥ its value at the smallest α − tol",
    )

    for _, task in lk.tasks():
        for source, target, scenario in lk.pairs(task):
            p = lk.prt(task, source, target)
            if p is None:
                continue
            if source == target:
                ft = lk.ft_of(task, source, prefer="ft_source")
                if ft is not None:
                    tol = tolerance(p, ft)
                    d = abs(p.mean - ft.mean)
                    same.checks.append(
                        (d <= tol, f"{task}: {source}→{source}: PRT {p} vs FT {ft}; |Δ| = {d:.3f} "
                                   f"{'≤' if d <= tol else '>'} tol {tol:.3f} {_mark(d <= tol)}")
                    )
                continue
            base = lk.base_alone(task, target)
            if base is not None:
                ok = p.mean > base.mean
                beats.checks.append(
                    (ok, f"{task}: {source}→{target}: PRT {p} vs {target} alone {base}; "
                         f"Δ = {p.mean - base.mean:+.3f} {_mark(ok)}")
                )
            e = lk.eft(task, source, target)
            if e is not None:
                tol = tolerance(p, e)
                ok = p.mean >= e.mean - tol
                eft.checks.append(
                    (ok, f"{task}: {source}→{target}: PRT {p} vs EFT {e}; Δ = {p.mean - e.mean:+.3f}, "
                         f"tol {tol:.3f} {_mark(ok)}")
                )
            if scenario in ("upscaling", "update"):
                b_s, b_t = lk.base_alone(task, source), lk.base_alone(task, target)
                ref = lk.prt(task, source, source)
                ref_name = f"PRT({source}→{source})"
                if ref is None:
                    ref, ref_name = lk.ft_of(task, source, prefer="ft_source"), f"FT({source})"
                if b_s is not None and b_t is not None and ref is not None:
                    ok = b_t.mean > b_s.mean and p.mean > ref.mean
                    bigger.checks.append(
                        (ok, f"{task} ({scenario}): {target} alone {b_t} vs {source} alone {b_s}; "
                             f"PRT({source}→{target}) {p} vs {ref_name} {ref} {_mark(ok)}")
                    )

        for source in lk.sources(task):
            ro_alphas = lk.alphas(task, "reward_only", source)
            prt_alphas = lk.alphas(task, "prt", source)
            if len(ro_alphas) < 2 and len(prt_alphas) < 2:
                continue
            if len(ro_alphas) >= 2:
                lo, hi = ro_alphas[0], ro_alphas[-1]
                r_lo, r_hi = lk.reward_only(task, source, lo), lk.reward_only(task, source, hi)
                ok = r_hi.mean < r_lo.mean
                alpha.checks.append(
                    (ok, f"{task}: reward only of {source}: α={fmt_alpha(lo)} {r_lo} → α={fmt_alpha(hi)} {r_hi} {_mark(ok)}")
                )
            if len(prt_alphas) >= 2:
                lo, hi = prt_alphas[0], prt_alphas[-1]
                for s, target, _ in lk.pairs(task):
                    if s != source:
                        continue
                    p_lo = lk.prt(task, source, target, alpha=lo)
                    p_hi = lk.prt(task, source, target, alpha=hi)
                    if p_lo is None or p_hi is None:
                        continue
                    tol = tolerance(p_lo, p_hi)
                    ok = p_hi.mean >= p_lo.mean - tol
                    alpha.checks.append(
                        (ok, f"{task}: PRT {source}→{target}: α={fmt_alpha(lo)} {p_lo} → α={fmt_alpha(hi)} {p_hi}, "
                             f"tol {tol:.3f} {_mark(ok)}")
                    )
    return [same, beats, bigger, eft, alpha]
