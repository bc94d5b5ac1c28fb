"""The paper's claims, checked against a suite's numbers: pass, fail, or no data.

Every comparison is between two methods on the same test items, decided on the 95 %
confidence interval of their difference Δ = A − B (``prt_bench.report.stats``: a paired
bootstrap over the items, and over the seeds of each method when there are several) with an
exact paired test's p-value beside it (McNemar, or a paired permutation test).  Results kept
without per-sample records fall back to a normal approximation from the two error bars, and
say so.  The rules, in those terms (TOL_ABS = 3 points, what the paper treats as "comparable"):

- A > B ("beats", "higher"): the interval lies above 0.
- A ≈ B: the interval lies within [−TOL_ABS, +TOL_ABS] (the data show them within 3 points; an
  interval that only reaches into it -- too wide to tell -- does not make them equal).

A claim holds only where its interval shows it: too few items or seeds fail it, and the check
says so.
- A ≥ B − tol (comparable or better): the interval's lower end is above −TOL_ABS.
- A < B ("drops"): the interval lies below 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prt_bench.report.results import fmt_alpha
from prt_bench.report.stats import Paired
from prt_bench.report.tables import Lookup

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


def above(d: Paired) -> bool:
    return d.lo > 0


def below(d: Paired) -> bool:
    return d.hi < 0


def comparable(d: Paired) -> bool:
    return -TOL_ABS <= d.lo and d.hi <= TOL_ABS


def _why_not_comparable(d: Paired) -> str:
    """Why ``comparable`` fails: the interval is apart from ±TOL_ABS, or too wide to tell."""
    if d.lo > TOL_ABS or d.hi < -TOL_ABS:
        return f" (apart by more than {TOL_ABS})"
    return f" (the interval is too wide to show them within ±{TOL_ABS})"


def not_worse(d: Paired) -> bool:
    return d.lo > -TOL_ABS


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def check_claims(lk: Lookup) -> list[Claim]:
    same = Claim(
        "PRT on the training base ≈ FT",
        f"PRT(s→s) ≈ FT(s): the 95 % CI of the difference lies within ±{TOL_ABS}",
    )
    beats = Claim("PRT on swapped bases beats each base alone",
                  "PRT(s→t) − base alone(t): the 95 % CI lies above 0, for every t ≠ s")
    bigger = Claim(
        "Bigger/newer targets score higher",
        "for upscaling/update transfers: base alone(t) − base alone(s) (on the task's knowledge probe where it "
        "has one) and PRT(s→t) − PRT(s→s) (else FT(s)): both 95 % CIs above 0",
    )
    eft = Claim("PRT ≈ EFT", f"PRT(s→t) − EFT(s→t): the 95 % CI's lower end above −{TOL_ABS}, for every t ≠ s "
                             "(comparable or better)")
    alpha = Claim(
        "α lowers reward-only accuracy without lowering PRT accuracy",
        "from the smallest to the largest α: reward only drops (95 % CI below 0), and PRT(s→t) holds "
        f"(the CI's lower end above −{TOL_ABS})",
    )

    for _, task in lk.tasks():
        # what a base alone knows of the task: its knowledge probe where it has one (a base alone
        # need not write the task's answer format, which is what fine-tuning teaches)
        knows = (lk.probes(task) or [task])[0]
        for source, target, scenario in lk.pairs(task):
            p = lk.prt(task, source, target)
            if p is None:
                continue
            if source == target:
                ft = lk.ft_of(task, source, prefer="ft_source")
                if ft is not None:
                    d = lk.compare(p, ft)
                    ok = comparable(d)
                    same.checks.append((ok, f"{task}: {source}→{source}: PRT {p} vs FT {ft}; {d}"
                                            f"{'' if ok else _why_not_comparable(d)} {_mark(ok)}"))
                continue
            base = lk.base_alone(task, target)
            if base is not None:
                d = lk.compare(p, base)
                beats.checks.append((above(d), f"{task}: {source}→{target}: PRT {p} vs {target} alone {base}; {d} "
                                               f"{_mark(above(d))}"))
            e = lk.eft(task, source, target)
            if e is not None:
                d = lk.compare(p, e)
                eft.checks.append((not_worse(d), f"{task}: {source}→{target}: PRT {p} vs EFT {e}; {d} "
                                                 f"{_mark(not_worse(d))}"))
            if scenario in ("upscaling", "update"):
                on = knows if None not in (lk.base_alone(knows, source), lk.base_alone(knows, target)) else task
                b_s, b_t = lk.base_alone(on, source), lk.base_alone(on, target)
                ref = lk.prt(task, source, source)
                ref_name = f"PRT({source}→{source})"
                if ref is None:
                    ref, ref_name = lk.ft_of(task, source, prefer="ft_source"), f"FT({source})"
                if b_s is not None and b_t is not None and ref is not None:
                    d_base, d_prt = lk.compare(b_t, b_s), lk.compare(p, ref)
                    ok = above(d_base) and above(d_prt)
                    bigger.checks.append(
                        (ok, f"{task} ({scenario}): {target} alone {b_t} vs {source} alone {b_s}"
                             f"{'' if on == task else ' on ' + on}: {d_base}; "
                             f"PRT({source}→{target}) {p} vs {ref_name} {ref}: {d_prt} {_mark(ok)}")
                    )

        for source in lk.sources(task):
            ro_alphas = lk.alphas(task, "reward_only", source)
            prt_alphas = lk.alphas(task, "prt", source)
            if len(ro_alphas) < 2 and len(prt_alphas) < 2:
                continue
            if len(ro_alphas) >= 2:
                lo, hi = ro_alphas[0], ro_alphas[-1]
                r_lo, r_hi = lk.reward_only(task, source, lo), lk.reward_only(task, source, hi)
                d = lk.compare(r_hi, r_lo)
                alpha.checks.append(
                    (below(d), f"{task}: reward only of {source}: α={fmt_alpha(lo)} {r_lo} → α={fmt_alpha(hi)} {r_hi}; "
                               f"{d} {_mark(below(d))}")
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
                    d = lk.compare(p_hi, p_lo)
                    alpha.checks.append(
                        (not_worse(d), f"{task}: PRT {source}→{target}: α={fmt_alpha(lo)} {p_lo} → α={fmt_alpha(hi)} "
                                       f"{p_hi}; {d} {_mark(not_worse(d))}")
                    )
    return [same, beats, bigger, eft, alpha]
