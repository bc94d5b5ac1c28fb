"""The methods a suite compares, and what each evaluates: the one table the suite, the
evaluators and the report read (the combinations themselves are in ``prt_bench.prt``).

========== ============ ===================== =============================================
method     combination  roles it loads        what it is
========== ============ ===================== =============================================
zeroshot   zeroshot     target                the base alone
ft_source  ft           ft                    the source fine-tuned (FT of the source)
ft_target  ft           ft                    the target fine-tuned: the upper bound
prt        prt          target, reward        target base + portable reward (eq. 10)
eft        eft          target, ft, pt        target + (FT of source - source), proxy tuning
reward_only reward      reward                softmax of the reward alone (Figs. 6-7)
========== ============ ===================== =============================================
"""

from __future__ import annotations

# suite method -> the combination the evaluators compute
COMBINATION = {"zeroshot": "zeroshot", "ft_source": "ft", "ft_target": "ft", "prt": "prt", "eft": "eft",
               "reward_only": "reward"}
METHODS = tuple(COMBINATION)                 # in the order the report shows them
COMBINATIONS = ("zeroshot", "ft", "prt", "eft", "reward")
# combination -> the models it loads (the evaluators' roles)
ROLES = {"zeroshot": ("target",), "ft": ("ft",), "prt": ("target", "reward"), "eft": ("target", "ft", "pt"),
         "reward": ("reward",)}
# methods whose result depends on the reward's entropy weight alpha (eq. 12)
WITH_ALPHA = ("prt", "reward_only")
LABELS = {"zeroshot": "base alone", "ft_source": "FT (source)", "ft_target": "FT (target)", "prt": "PRT",
          "eft": "EFT", "reward_only": "reward only"}
