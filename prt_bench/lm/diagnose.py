"""Why a language transfer wins or loses, read from a suite run's own records and checkpoints.

``prt-bench diagnose lm --suite mini`` takes a finished run (cells in ``results/<suite>/``, the
trained checkpoints in ``runs/<suite>/``) and writes four measurements, each per base:

1. **split**: every evaluation cell's score on groups of the test documents (mini_gsm: the
   problems with a step in a phrasing the train split never uses, and the others), from the
   cell's per-sample records;
2. **probe**: what each base knows before any fine-tuning: teacher-forced on the gold answers of
   the test split, how often the base alone writes a step's whole calculation (``First she wins
   1 more marbles, so she has`` -> ``24 + 1 = 25``: operand, operator and result, every token its
   greedy choice) -- per group of lines (held-out phrasing or not): knowing what ``wins`` does is
   the knowledge the held-out share of the test needs; and which part of a calculation it misses
   (the running value, the operator, the step's number, the result), with what it writes for a
   missed step's number: another of the prompt's numbers, or one the prompt does not hold;
3. **distance**: on the fine-tuning data's responses, teacher-forced, the mean per-token KL of
   each target from the source, and how far FT, PRT and EFT move each target (KL from the
   target alone), with the gold tokens' mean log-prob under each;
4. **divergence**: for every test problem PRT gets right on the source and wrong on the target
   (on the source itself: every problem it gets wrong), the first token where its generation
   leaves the gold answer, and there the margins log p(gold) - log p(PRT's token) of the target
   alone, of the reward (r, as it enters eq. 10), of EFT's implicit reward and of the target's own
   FT: whether the reward's correction points the right way but is too weak (and how much
   stronger, 1/λ, it would have to be), or points the wrong way.

Everything is computed from the cells the suite defines at its main α and trained λ; nothing is
re-trained.  The documents are the ones lm-eval evaluated, matched to the samples by
lm-eval's own document and prompt hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from prt_bench import prt
from prt_bench.mini.lm.gsm import LEAD
from prt_bench.mini.lm.tasks import CALC
from prt_bench.report.card import P1_FLOOR, P4_FLOOR

# -------------------------------------------------------------------- groups of documents

HELD_OUT = "held-out phrasing"
ORDINARY = "ordinary"


def mini_gsm_doc_group(doc: dict[str, Any]) -> str:
    from prt_bench.mini.lm.gsm import held_out_phrasing

    return HELD_OUT if held_out_phrasing(doc["question"]) else ORDINARY


def mini_gsm_line_group(prompt: str, line: str) -> str:
    """The group of a gold answer line: whether the step it tells is in a held-out phrasing."""
    from prt_bench.mini.lm.gsm import line_held_out

    return HELD_OUT if line_held_out(prompt, line) else ORDINARY


# lm-eval task -> document -> group name (tasks without an entry: one group, "all")
DOC_GROUPS: dict[str, Callable[[dict[str, Any]], str]] = {"mini_gsm": mini_gsm_doc_group}
# lm-eval task -> ((prompt, line of a gold answer) -> group) for the probe; tasks without one are not probed
LINE_GROUPS: dict[str, Callable[[str, str], str]] = {"mini_gsm": mini_gsm_line_group}
# lm-eval task -> the words the base's corpus writes before restating a story: the probe also asks
# each base alone to restate the problem (the answer's first line) after the prompt and these words
COPY_CUES: dict[str, str] = {"mini_gsm": " Let us count."}
RESTATES = "restates the problem"
UNSEEN = "prompt tokens never pretrained on"
OPENING = "copies the opening number"  # in the task's own layout: after the prompt and the line's words before it
MISSES = "misses"  # column prefix: the share of calculations whose part is not every token greedy
LEAD_NUMBER = "misses: a line's lead"  # "lead" answer lines: the share whose copied step's number is not greedy
NUMBER_FROM_PROMPT = "missed step's number: another of the prompt's"


# -------------------------------------------------------------------- what the run holds

@dataclass
class Run:
    """A finished run of a language suite: its cells, records, bases, checkpoints and documents."""
    suite: Any
    section: Any
    task: str                       # the suite's task name
    lm_task: str                    # its lm-eval task
    metric: str
    results: Path                   # results/<suite>
    runs: Path                      # runs/<suite>
    records: dict[str, dict]        # eval cell id -> record
    cells: list                     # the suite's eval cells at the main alpha and trained lambda, first seed
    later_seeds: list               # the same cells' records in the suite's other seeds (read, never loaded)
    bases: dict[str, str]           # base name -> folder
    docs: list[dict]                # lm-eval's evaluation documents, in doc_id order
    prompts: list[str]
    targets: list[str]              # the gold continuation of each document (after the prompt)
    train_rows: list[dict]          # the fine-tuning data (prompt/response)
    lam: float
    stops: tuple[str, ...] = ()     # the task's stop sequences (its `until`): a response leaves them out
    _models: dict[str, Any] = field(default_factory=dict)
    _samples: dict[str, tuple] = field(default_factory=dict)   # cell id -> (header, rows), read once
    _tok: Any = None

    def cell(self, method: str, target: str, source: str | None = None):
        for c in self.cells:
            if c.method == method and c.target == target and (source is None or c.source == source):
                return c
        return None

    def trained(self, cell, role: str) -> str:
        return str(self.runs / cell.needs[role])

    def samples(self, cell) -> tuple[dict, list[dict]]:
        """(header, rows) of a cell's per-sample records, read and checked once."""
        if cell.cell_id not in self._samples:
            from prt_bench.suite import samples

            self._samples[cell.cell_id] = samples.read(self.results, self.records[cell.cell_id])
        return self._samples[cell.cell_id]

    def rows(self, cell) -> list[dict]:
        return self.samples(cell)[1]

    def scores(self, cell) -> dict[int, float]:
        """doc id -> the document's value of the primary metric (its samples, as the report reads them)."""
        from prt_bench.lm.samples import item_scores

        return {int(k): v for k, v in item_scores(*self.samples(cell), self.metric).items()}

    @property
    def tokenizer(self):
        if self._tok is None:
            from prt_bench.lm.load import load_tokenizer

            self._tok = load_tokenizer(next(iter(self.bases.values())))
        return self._tok

    def model(self, path: str):
        if path not in self._models:
            from prt_bench.lm.load import load_causal_lm

            self._models[path] = load_causal_lm(path, dtype="float32", device="cpu")
        return self._models[path]


def load_run(suite_ref: str | Path, results: Path, runs: Path, cache: Path | None = None,
             task: str | None = None) -> Run:
    import os

    from lm_eval.tasks import TaskManager

    from prt_bench.suite import modalities
    from prt_bench.suite.modalities.lm import TASKS_DIR
    from prt_bench.suite.plan import expand
    from prt_bench.suite.resolve import build_world, resolve_base
    from prt_bench.suite.schema import load_suite
    from prt_bench.suite.store import read_cell

    suite = load_suite(suite_ref)
    if "lm" not in suite.sections:
        raise ValueError(f"suite {suite.name} has no language section")
    section = suite.sections["lm"]
    task = task or next(iter(section.tasks))
    if task not in section.tasks:
        raise ValueError(f"suite {suite.name} has no language task {task!r} (it has: {', '.join(section.tasks)})")
    results_dir, runs_dir = Path(results) / suite.name, Path(runs) / suite.name
    every_seed = [c for c in expand(suite) if c.kind == "eval" and c.modality == "lm" and c.task == task
                  and c.lam is None and (c.method not in ("prt", "reward_only") or c.alpha == section.alpha)]
    records = {c.cell_id: r for c in every_seed if (r := read_cell(results_dir, c.cell_id)) is not None}
    cells = [c for c in every_seed if c.seed == suite.seeds[0]]
    later = [c for c in every_seed if c.seed != suite.seeds[0] and c.cell_id in records]
    if not any(c.cell_id in records for c in cells):
        raise FileNotFoundError(f"no evaluation cell of {suite.name}/{task} in {results_dir}: run the suite first "
                                f"(prt-bench run --suite {suite.name})")
    cells = [c for c in cells if c.cell_id in records]
    for c in cells:
        for role, train_id in c.needs.items():
            folder = runs_dir / train_id
            if not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
                raise FileNotFoundError(f"{c.label}: its {role} checkpoint {folder} is missing (the diagnosis reads "
                                        f"the run's checkpoints: run the suite on this machine)")
    lm = modalities.get("lm")
    world = build_world(suite, "lm", cache, False) if any("mini" in s for s in section.bases.values()) else None
    bases = {name: resolve_base("lm", spec, cache, world) for name, spec in section.bases.items()}
    from prt_bench.mini.lm.tasks import ENV_VAR

    if world:  # where the mini tasks' lm-eval files read their data
        os.environ[ENV_VAR] = world["data_dir"]
    lm_task = section.tasks[task]["lm_eval_task"]
    task_obj = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load([lm_task])["tasks"][lm_task]
    docs = list(task_obj.eval_docs)
    limit = section.tasks[task].get("limit", section.eval.get("limit"))
    if limit is not None:
        docs = docs[:int(limit)]
    delimiter = task_obj.config.target_delimiter
    data = lm.resolve_data(lm.train_data(section, task)[1], world, cache)
    run = Run(suite=suite, section=section, task=task, lm_task=lm_task,
              metric=section.tasks[task].get("primary_metric", lm.default_primary), results=results_dir,
              runs=runs_dir, records=records, cells=cells, later_seeds=later, bases=bases, docs=docs,
              prompts=[task_obj.doc_to_text(d) for d in docs],
              targets=[delimiter + str(task_obj.doc_to_target(d)) for d in docs],
              stops=_until(task_obj),
              train_rows=[json.loads(x) for x in Path(data).read_text(encoding="utf-8").splitlines() if x.strip()],
              lam=float(section.train.get("lam", 1.0)))
    _check_alignment(run)
    return run


def _until(task_obj) -> tuple[str, ...]:
    """The stop sequences of an lm-eval task's generations (``generation_kwargs.until``)."""
    until = (task_obj.config.generation_kwargs or {}).get("until") or ()
    return tuple(t for t in ([until] if isinstance(until, str) else until) if t)


def _check_alignment(run: Run) -> None:
    """The documents must be the ones the cells evaluated: lm-eval's prompt hash of each sample."""
    for cell in run.cells + run.later_seeds:
        for row in run.rows(cell):
            i = int(row["doc_id"])
            if i >= len(run.prompts) or _sha(run.prompts[i]) != row["prompt_hash"]:
                raise ValueError(f"document {i} of {run.lm_task} is not the one {cell.label} evaluated (prompt "
                                 "hashes differ): the task data changed since the run")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -------------------------------------------------------------------- 1. split

def split(run: Run) -> list[dict[str, Any]]:
    """Each cell's primary metric on each group of documents, with the group's size: the mean over
    every fine-tuning seed the run holds (``seeds``), and in ``per seed`` each seed's."""
    groups_of = DOC_GROUPS.get(run.lm_task, lambda doc: "all")
    groups = [groups_of(d) for d in run.docs]
    size = Counter(groups)
    names = sorted(size, key=lambda g: (g != ORDINARY, g))
    key = lambda c: (c.method, c.source, c.target, c.scenario)  # noqa: E731

    def means(cell) -> dict[str, float | None]:
        scores = run.scores(cell)
        row = {"all": sum(scores.values()) / len(scores)}
        for g in names:
            mine = [v for i, v in scores.items() if groups[i] == g]
            row[g] = sum(mine) / len(mine) if mine else None
        return row

    out = []
    for cell in run.cells:
        seeds = [means(c) for c in [cell] + [c for c in run.later_seeds if key(c) == key(cell)]]
        row = {"method": cell.method, "source": cell.source, "target": cell.target, "scenario": cell.scenario,
               "seeds": len(seeds)}
        for g in ["all", *names]:
            values = [m[g] for m in seeds if m[g] is not None]
            row[g] = sum(values) / len(values) if values else None
            if g in size:
                row[f"n {g}"] = size[g]
        if len(seeds) > 1:
            row["per seed"] = " / ".join(" ".join(f"{m[g]:.3f}" for m in seeds) for g in names)
        out.append(row)
    return out


OPENS_FT = "first word: one the fine-tuning answers open with"
DEPARTURES = ("right", OPENS_FT, "first word: another", "later in the first line", "after the first line")


def departures(run: Run) -> list[dict[str, Any]]:
    """Where each cell's answers first leave the gold, per seed: the share of problems it gets
    right, loses at the answer's first word -- to a word the fine-tuning answers open with (a
    name of the training problems, where the test's are held out) or another -- later in the
    first line (restating the problem), or after it.  Read from the per-sample records only."""
    openers = {r["response"].split()[0] for r in run.train_rows if r["response"].split()}
    strict = run.metric.split(",")[1] if "," in run.metric else None
    out = []
    for cell in run.cells:
        scores = run.scores(cell)
        made = {int(r["doc_id"]): r["resps"][0][0] for r in run.rows(cell) if strict is None or r["filter"] == strict}
        counts = dict.fromkeys(DEPARTURES, 0)
        for i, score in scores.items():
            gold, answer = run.targets[i].strip(), made[i].strip()
            if score >= 1:
                kind = "right"
            elif gold.split()[:1] != answer.split()[:1]:
                kind = OPENS_FT if answer.split()[:1] and answer.split()[0] in openers else "first word: another"
            elif gold.split("\n")[0] != answer.split("\n")[0]:
                kind = "later in the first line"
            else:
                kind = "after the first line"
            counts[kind] += 1
        out.append({"method": cell.method, "source": cell.source, "target": cell.target, "seed": cell.seed,
                    "problems": len(scores), **{k: v / max(len(scores), 1) for k, v in counts.items()}})
    return out


# -------------------------------------------------------------------- 2. probe

@torch.no_grad()
def _logprobs(model, ids: list[int]) -> torch.Tensor:
    """log softmax of the model's logits at every position of one sequence: [len, vocab]."""
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    return prt.log_probs(logits)


@torch.no_grad()
def _logits(model, ids: list[int]) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def _encode(run: Run, prompt: str, continuation: str) -> tuple[list[int], int, list[tuple[int, int]]]:
    """Token ids of prompt + continuation, where the continuation starts, and each continuation
    token's character span within the continuation."""
    tok = run.tokenizer
    head = tok.encode(prompt)
    enc = tok(continuation, add_special_tokens=False, return_offsets_mapping=True)
    return head + list(enc["input_ids"]), len(head), [tuple(o) for o in enc["offset_mapping"]]


def probe(run: Run, bases: list[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Per base alone: the share of the calculations in the test split's gold answers that it
    writes exactly (every token greedy, teacher-forced), per group of lines, and the share whose
    running value, operator, step's number or result it misses (with, for a missed step's number,
    the share written from the prompt's other numbers; in "lead" answer lines, the share whose
    lead, the step's number copied after the anchor, it misses); and the share of
    problems whose first answer line it writes exactly after the prompt and the corpus's cue
    (copying from the prompt, asked in the corpus's words: no fine-tuning needed); the share whose
    first number (the problem's opening, restated) it writes after the prompt and the line's words
    before it, in the task's own layout, with the median log-prob of that number; and the prompt
    tokens its pretraining never held."""
    line_group = LINE_GROUPS.get(run.lm_task)
    if line_group is None:
        return []
    cue = COPY_CUES.get(run.lm_task)
    seen_by: dict[str, set[int]] = {}
    by_layout: dict[bool, list] = {}  # the restating items, encoded once per corpus layout

    def restated(name: str) -> list:
        """The restating items in the layout of the base's corpus: after the cue, a counted-through
        story goes on in its paragraph (" Mia has ...") or on a line of its own ("\nMia has ...")."""
        lines = _corpus_of(run.bases[name]).get("counted_layout") == "lines"
        if lines not in by_layout:
            by_layout[lines] = [_encode(run, prompt + cue, ("\n" if lines else " ") + target.strip().split("\n")[0])
                                for prompt, target in zip(run.prompts[:limit], run.targets[:limit])]
        return by_layout[lines]
    items: dict[int, list] = {}  # doc index -> its calculations: (token start, token end, group, parts)
    leads: dict[int, list] = {}  # doc index -> the token ranges of its "lead" lines' step numbers
    openings = {}  # doc index -> positions of the first number of the answer's first line
    encoded = []
    numbers = []  # per doc: the numbers its prompt holds
    for i, (prompt, target) in enumerate(zip(run.prompts[:limit], run.targets[:limit])):
        ids, start, spans = _encode(run, prompt, target)
        encoded.append(ids)
        numbers.append(set(re.findall(r"-?\d+", prompt)))
        number = re.search(r"\d+", target.split("\n")[0])
        where = _tokens(spans, number.start(), number.end(), start) if number else None
        if where:
            openings[i] = list(range(*where))
        offset = 0
        for line in target.split("\n"):
            lead = LEAD.match(line)
            where = lead and _tokens(spans, offset + lead.start("number"), offset + lead.end("number"), start)
            if where:
                leads.setdefault(i, []).append((*where, line.split(" ", 1)[0]))
            for m in CALC.finditer(line):
                where = _tokens(spans, offset + m.start(1), offset + m.end(1), start)
                if where:
                    items.setdefault(i, []).append((*where, line_group(prompt, line), _parts(m, offset, spans, start)))
            offset += len(line) + 1
    out = []
    for name in bases:
        model = run.model(run.bases[name])
        hits: dict[str, list[int]] = {}
        missed = dict.fromkeys(CALC.groupindex, 0)
        number_from_prompt = []  # per missed step's number: whether what the base wrote is in the prompt
        opened = []  # (first number written, its log-prob), per problem with an opening number
        led = []  # per lead line: (its anchor, whether the base copies its step's number)
        for i, ids in enumerate(encoded):  # one forward per document, read for every item of it
            if i not in items and i not in openings:
                continue
            logits = _logits(model, ids)
            greedy = logits.argmax(-1).tolist()  # greedy[k]: the base's choice for token k + 1
            for lo, hi, group, parts in items.get(i, ()):
                hits.setdefault(group, []).append(int(greedy[lo - 1:hi - 1] == ids[lo:hi]))
                for part, (a, b) in parts.items():
                    wrote = greedy[a - 1:b - 1]
                    if wrote != ids[a:b]:
                        missed[part] += 1
                        if part == "number":
                            number_from_prompt.append(run.tokenizer.decode(wrote).strip() in numbers[i])
            led += [(anchor, greedy[a - 1:b - 1] == ids[a:b]) for a, b, anchor in leads.get(i, ())]
            if i in openings:
                where = openings[i]
                lp = prt.log_probs(logits[[k - 1 for k in where]])
                gold = torch.tensor([ids[k] for k in where])
                opened.append((bool((lp.argmax(-1) == gold).all()), float(lp.gather(-1, gold[:, None]).sum())))
        row = {"base": name}
        for g in sorted(hits, key=lambda g: (g != ORDINARY, g)):
            row[g], row[f"n {g}"] = sum(hits[g]) / len(hits[g]), len(hits[g])
        n_calcs = sum(len(h) for h in hits.values())
        row["all"] = sum(sum(h) for h in hits.values()) / max(1, n_calcs)
        for part, count in missed.items():
            row[f"{MISSES}: {part}"] = count / max(1, n_calcs)
        if led:
            row[LEAD_NUMBER], row[f"n {LEAD_NUMBER}"] = 1 - sum(ok for _, ok in led) / len(led), len(led)
            by = {}
            for anchor, ok in led:
                by.setdefault(anchor, []).append(ok)
            row[f"{LEAD_NUMBER}, by anchor"] = " · ".join(f"{a} {1 - sum(v) / len(v):.3f} of {len(v)}"
                                                          for a, v in by.items())
        if number_from_prompt:
            row[NUMBER_FROM_PROMPT] = sum(number_from_prompt) / len(number_from_prompt)
        row["items"] = [h for g in sorted(hits) for h in hits[g]]  # the same items, in one order, for every base
        if cue:
            copied = [bool((_logits(model, ids)[start - 1:-1].argmax(-1) == torch.tensor(ids[start:])).all())
                      for ids, start, _ in restated(name)]
            row[RESTATES], row[f"n {RESTATES}"] = sum(copied) / len(copied), len(copied)
        if opened:
            row[OPENING] = sum(h for h, _ in opened) / len(opened)
            row[f"{OPENING}: median log p"] = _median([v for _, v in opened])
        unseen = unseen_prompt_tokens(run, name, seen_by)
        if unseen is not None:
            row[UNSEEN], row["unseen"] = len(unseen), " ".join(repr(t) for t in unseen[:12])
        out.append(row)
    return out


def _tokens(spans: list[tuple[int, int]], lo: int, hi: int, start: int) -> tuple[int, int] | None:
    """The token range, in the whole sequence, of the continuation's characters [lo, hi); None
    unless they start a token (" 24" or "24": a token shared with what comes before is not theirs)."""
    toks = [k for k, (a, b) in enumerate(spans) if a < hi and b > lo]
    if toks and spans[toks[0]][0] >= lo - 1:
        return start + toks[0], start + toks[-1] + 1
    return None


def _parts(calc: re.Match, offset: int, spans: list[tuple[int, int]], start: int) -> dict[str, tuple[int, int]]:
    """The token range of each part of a calculation (CALC's named groups) found on a line that
    starts ``offset`` characters into the continuation (a part that does not start a token is left out)."""
    ranges = {part: _tokens(spans, offset + calc.start(part), offset + calc.end(part), start) for part in CALC.groupindex}
    return {part: r for part, r in ranges.items() if r}


def _corpus_of(base: str) -> dict[str, Any]:
    """The pretraining corpus config a mini base records in its manifest ({} for other bases)."""
    return next(iter(_corpora_of(base)), {})


def _corpora_of(base: str) -> list[dict[str, Any]]:
    """Every corpus a mini base was pretrained on: its own and those of the bases it went on from."""
    from prt_bench.io import read_manifest

    config, out = (read_manifest(base) or {}).get("config") or {}, []
    while config:
        if config.get("corpus"):
            out.append(config["corpus"])
        config = config.get("init") or {}
    return out


def unseen_prompt_tokens(run: Run, name: str, seen_by: dict[str, set[int]] | None = None) -> list[str] | None:
    """The tokens of the fine-tuning data's prompts (the test's where there is none) that never
    occur in the base's pretraining corpora, most frequent first; None for a base that records no
    corpus.  A base reads such a token through an embedding pretraining never touched, and what it
    makes of it is a draw's luck.  (The fine-tuning prompts, not the test's: the words of the
    test's held-out phrasings are missing from v1 by design -- the knowledge v2 brings.)"""
    from prt_bench.mini.lm import corpus

    corpora = _corpora_of(run.bases[name])
    if not corpora:
        return None
    seen_by = {} if seen_by is None else seen_by  # corpus config -> its token ids, shared across bases
    tok, seen = run.tokenizer, set()
    for config in corpora:
        key = json.dumps(config, sort_keys=True)
        if key not in seen_by:
            docs = corpus.generate(corpus.CorpusConfig(**config))
            seen_by[key] = {t for ids in tok(docs, add_special_tokens=False)["input_ids"] for t in ids}
        seen |= seen_by[key]
    prompts = [r["prompt"] for r in run.train_rows] or run.prompts
    counts = Counter(t for p in prompts for t in tok(p, add_special_tokens=False)["input_ids"])
    return [tok.decode([t]) for t, _ in counts.most_common() if t not in seen]


# -------------------------------------------------------------------- 3. distance

def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row; tokens p rules out add nothing."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def distance(run: Run, source: str, targets: list[str], n: int = 200) -> list[dict[str, Any]]:
    """On the first ``n`` fine-tuning examples' response tokens (teacher-forced): per target,
    mean KL(source || target), and for the target alone, FT of it, PRT and EFT onto it: the mean
    KL from the target alone (how far each moves it) and the gold tokens' mean log-prob."""
    rows = run.train_rows[:n]
    ft_s = run.cell("ft_source", source, source)
    prt_cell = next((c for c in run.cells if c.method == "prt" and c.source == source), None)  # the source's reward
    out = []
    for target in targets:
        # each method's log-probs from the models' logits, every model run once per example (`L`)
        methods: dict[str, Callable[[Callable], torch.Tensor]] = {}
        base, src = run.model(run.bases[target]), run.model(run.bases[source])
        methods["base alone"] = lambda L, b=base: prt.log_probs(L(b))
        ft_t = run.cell("ft_target", target) or (ft_s if target == source else None)
        if ft_t is not None:
            methods["FT of the target"] = lambda L, f=run.model(run.trained(ft_t, "ft")): prt.log_probs(L(f))
        if prt_cell is not None:
            reward = run.model(run.trained(prt_cell, "reward"))
            methods["PRT"] = lambda L, b=base, r=reward: prt.prt_logprobs(L(b), L(r), run.lam)
        if ft_s is not None and target != source:
            ft_src = run.model(run.trained(ft_s, "ft"))
            methods["EFT"] = lambda L, b=base, f=ft_src: prt.eft_logprobs(L(b), L(f), L(src))
        kl_src, gold = [], {k: [] for k in methods}
        moved = {k: [] for k in methods if k != "base alone"}
        for row in rows:
            ids, start, _ = _encode(run, row["prompt"], row["response"])
            labels = torch.tensor(ids[start:])
            seen: dict[int, torch.Tensor] = {}

            def L(model, ids=ids, seen=seen) -> torch.Tensor:
                if id(model) not in seen:
                    seen[id(model)] = _logits(model, ids)
                return seen[id(model)]

            lp = {k: f(L)[start - 1:-1] for k, f in methods.items()}
            kl_src.append(_kl(prt.log_probs(L(src))[start - 1:-1], lp["base alone"]))
            for k, v in lp.items():
                gold[k].append(v.gather(-1, labels[:, None]).squeeze(-1))
                if k in moved:
                    moved[k].append(_kl(v, lp["base alone"]))
        row = {"target": target, "KL(source || target)": float(torch.cat(kl_src).mean())}
        for k in methods:
            row[f"gold log-prob: {k}"] = float(torch.cat(gold[k]).mean())
        for k in moved:
            row[f"KL({k} || target)"] = float(torch.cat(moved[k]).mean())
        out.append(row)
    return out


def _prt_cell(run: Run, source: str, target: str):
    return next((c for c in run.cells if c.method == "prt" and c.source == source and c.target == target), None)


# -------------------------------------------------------------------- 4. divergence

def divergence(run: Run, source: str, target: str, method: str = "prt", top: int = 3,
               among: str = "lost") -> dict[str, Any] | None:
    """Where ``method`` (prt or eft) from ``source`` onto ``target`` leaves the gold answer on the
    problems it loses in the transfer (``among="lost"``: right on the source -- PRT on its own
    base, for EFT the source's FT -- wrong here) or on those it misses of what the target's own FT
    solves (``among="missed"``: the knowledge the transfer does not pass on), and the margins
    ``log p(gold token) - log p(its token)`` there
    (natural log): the target alone, PRT's reward (r as eq. 10 adds it, before 1/λ), EFT's
    implicit reward log π_ft − log π_pt, and the target's own FT.  ``correction`` is the
    method's own: the reward for PRT, the implicit reward for EFT."""
    if among not in ("lost", "missed"):
        raise ValueError(f"divergence among {among!r}: 'lost' or 'missed'")
    cell = next((c for c in run.cells if c.method == method and c.source == source and c.target == target), None)
    if cell is None:
        return None
    ft_s = run.cell("ft_source", source, source)
    own = _prt_cell(run, source, source) if method == "prt" else ft_s
    ft_t = run.cell("ft_target", target) or (ft_s if target == source else None)
    prt_cell = _prt_cell(run, source, target)
    base = run.model(run.bases[target])
    reward = run.model(run.trained(prt_cell, "reward")) if prt_cell is not None else None
    scores = run.scores(cell)
    # no baseline (no PRT on the source's own base / no FT of it, or the source itself): every wrong problem
    kept = run.scores(own) if own is not None and target != source else None
    if among == "missed":  # the problems the target's own FT solves
        if ft_t is None or target == source:
            return None
        kept = run.scores(ft_t)
    strict = run.metric.split(",")[1] if "," in run.metric else None
    resps = {int(r["doc_id"]): r["resps"][0][0] for r in run.rows(cell) if strict is None or r["filter"] == strict}
    tok = run.tokenizer
    strength = 1 / run.lam if method == "prt" else 1.0

    def vectors(prefix: list[int]) -> dict[str, torch.Tensor]:
        """At the end of ``prefix``: the target's log-probs, the reward's logits and EFT's
        implicit reward (each where there is one)."""
        out = {"base": _logprobs(base, prefix)[-1]}
        if reward is not None:
            out["reward"] = _logits(reward, prefix)[-1]
        if ft_s is not None:
            ft, pt = run.model(run.trained(ft_s, "ft")), run.model(run.bases[source])
            out["eft"] = _logprobs(ft, prefix)[-1] - _logprobs(pt, prefix)[-1]
        return out

    # what a stopped answer went on with: the task's stop sequences, end-of-text, each once
    stops = [tuple(tok.encode(t, add_special_tokens=False)) for t in run.stops] + [(tok.eos_token_id,)]
    stop_ids = [list(t) for t in dict.fromkeys(stops) if t]
    events, skipped = [], 0
    for i, score in sorted(scores.items()):
        if score >= 1 or (kept is not None and kept.get(i, 0.0) < 1):  # right here, or lost already on the source
            continue
        gold_ids, start, _ = _encode(run, run.prompts[i], run.targets[i])
        made = tok.encode(resps[i], add_special_tokens=False)
        gold = gold_ids[start:]
        k = next((j for j, (a, b) in enumerate(zip(gold, made)) if a != b), None)
        stopped = k is None and len(made) < len(gold)
        if k is None and not stopped:  # it ran on past the gold answer
            continue
        if stopped:
            # the answer stopped early: the generation went on with one of the task's stop sequences
            # (or end-of-text), which the response leaves out; the divergence is where the one the
            # method itself prefers most leaves the gold
            best, at = None, {}  # at: the vectors per divergence position (stops may share one)
            for stop in stop_ids:
                written = made + stop
                j = next((j for j, (a, b) in enumerate(zip(gold, written)) if a != b), None)
                if j is None:
                    continue
                if j not in at:
                    at[j] = vectors(gold_ids[:start + j])
                v = at[j]
                corr = v.get("reward" if method == "prt" else "eft")
                a, b = gold[j], written[j]
                margin = float(v["base"][a] - v["base"][b]) + (strength * float(corr[a] - corr[b]) if corr is not None
                                                                else 0.0)
                if best is None or margin < best[0]:
                    best = (margin, j, b, v)
            if best is None:
                continue
            _, k, b, v = best
            a = gold[k]
        else:
            a, b = gold[k], made[k]
            v = vectors(gold_ids[:start + k])
        lp_base = v["base"]
        where = _where(tok.decode(gold[:k]), tok.decode([a]), run.prompts[i], run.lm_task == "mini_gsm",
                       ", so " in run.targets[i])
        if stopped:
            where = where.split(":")[0] + ": stops early"
        event = {"doc": i, "position": k, "where": where,
                 "gold": tok.decode([a]), "made": tok.decode([b]), "base": float(lp_base[a] - lp_base[b]),
                 "base top": [tok.decode([t]) for t in lp_base.topk(top).indices.tolist()]}
        if "reward" in v:
            event["reward"] = float(v["reward"][a] - v["reward"][b])
        if "eft" in v:
            event["eft"] = float(v["eft"][a] - v["eft"][b])
        event["correction"] = event.get("reward" if method == "prt" else "eft")
        if ft_t is not None:
            lf = _logprobs(run.model(run.trained(ft_t, "ft")), gold_ids[:start + k])[-1]
            event["ft target"] = float(lf[a] - lf[b])
        if event["correction"] is None:
            continue
        if event["base"] + strength * event["correction"] >= 0:
            # the method itself prefers the gold token here: the re-tokenised text is not what it generated
            skipped += 1
            continue
        events.append(event)
    lost = None if kept is None else sum(1 for i, s in scores.items() if s < 1 and kept.get(i, 0.0) >= 1)
    return {"method": method, "source": source, "target": target, "among": among,
            "wrong": sum(1 for s in scores.values() if s < 1),
            "lost": lost, "n": len(scores), "skipped": skipped, "events": events, "summary": _summarise(events)}


def _where(answer_so_far: str, token: str, prompt: str, gsm_style: bool, restates: bool = True) -> str:
    """What kind of token the gold one is, and (mini_gsm-style answers) which part of the answer:
    a step's line is its calculation after ``, so `` where the answer restates the steps, all of it
    where it does not (``answer_lines: result``), after the anchor's lead (the step's number and
    a colon) where it has one (``answer_lines: lead``)."""
    from prt_bench.mini.lm.gsm import ANCHORS

    line = answer_so_far.split("\n")[-1]
    calculating = ", so " in line if restates else line.split(" ", 1)[0] in ANCHORS
    leading = not restates and re.fullmatch(rf"(?:{'|'.join(ANCHORS)})(?: \d+)?", line) and (
        token.strip().isdigit() or token.strip() == ":")
    part = ("first answer token" if not answer_so_far else "final answer" if "####" in line
            else "a line's lead" if leading else "calculation" if calculating
            else "restating a sentence") if gsm_style else (
        "first answer token" if not answer_so_far else "answer")
    word = token.strip()
    kind = ("number" if word.lstrip("-").isdigit() else "symbol" if word and not word[0].isalnum()
            else "word of the prompt" if word and re.search(rf"\b{re.escape(word)}\b", prompt) else "word")
    return f"{part}: {kind}"


def _summarise(events: list[dict]) -> dict[str, Any]:
    """At the divergences: how often the correction points to the gold token, how often the target
    alone prefers the wrong one, the median margins, and for a correction pointing the right way
    the strength 1/λ at which ``base + correction / λ`` would reach 0 (PRT's λ of eq. 10)."""
    if not events:
        return {"events": 0}
    n = len(events)
    right_way = [e for e in events if e["correction"] > 0]  # then the target alone outweighs it (base < 0)
    need = sorted(-e["base"] / e["correction"] for e in right_way)
    where: dict[str, int] = {}
    for e in events:
        where[e["where"]] = where.get(e["where"], 0) + 1
    out = {"events": n, "correction points to gold": len(right_way) / n,
           "target alone prefers the wrong token": sum(e["base"] < 0 for e in events) / n,
           "median base margin": _median([e["base"] for e in events]),
           "median correction margin": _median([e["correction"] for e in events]),
           "median 1/λ needed (right-way corrections)": need[len(need) // 2] if need else None,
           "share a 1/λ ≤ 2 turns": sum(x <= 2 for x in need) / n}
    if all("ft target" in e for e in events):
        out["target's own FT prefers gold"] = sum(e["ft target"] > 0 for e in events) / n
    out["where"] = dict(sorted(where.items(), key=lambda kv: -kv[1]))
    return out


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


# -------------------------------------------------------------------- 0. the world card

ROLE = {"upscaling": "bigger", "update": "newer", "upscaling_update": "bigger and newer",
        "other_arch": "other architecture"}


def world_card(run: Run, probed: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """The preconditions the mini world is designed to (P1, P2, P4; P0 is the report's), measured: each
    row a base, the precondition, the measurement, and whether it holds.  Orderings are paired
    comparisons on the same items (95 % bootstrap CI of the difference above 0)."""
    from prt_bench.report.stats import paired

    probe_of = {r["base"]: r for r in probed}
    ft_of = {}
    for c in run.cells:
        if c.method in ("ft_source", "ft_target"):
            ft_of.setdefault(c.target, run.scores(c))
    roles = {t.target: ROLE.get(t.scenario or "", t.scenario or "target") for t in run.section.transfers
             if t.source == source and t.target != source}  # a transfer to the source itself: its row is the source's
    rows = []
    for base in [source, *roles]:
        role = "source" if base == source else roles[base]
        if base in probe_of:
            p = probe_of[base]
            rows.append({"base": base, "role": role, "precondition": "P1 knows alone: probe > " + f"{P1_FLOOR:g}",
                         "measured": f"{p['all']:.3f} ({len(p['items'])} calculations)",
                         "holds": p["all"] > P1_FLOOR})
            if RESTATES in p:
                rows.append({"base": base, "role": role, "precondition": "P1 copies from the prompt: "
                             f"{RESTATES} after the corpus's cue > {P1_FLOOR:g}",
                             "measured": f"{p[RESTATES]:.3f} ({p['n ' + RESTATES]} problems)",
                             "holds": p[RESTATES] > P1_FLOOR})
            if UNSEEN in p:
                rows.append({"base": base, "role": role, "precondition": "P1 reads the prompt: every token of "
                             "the fine-tuning prompts occurs in its pretraining",
                             "measured": f"{p[UNSEEN]} never seen" + (f" ({p['unseen']})" if p[UNSEEN] else ""),
                             "holds": p[UNSEEN] == 0})
            if base != source and role != "other architecture" and source in probe_of:
                d = paired([p["items"]], [probe_of[source]["items"]])
                rows.append({"base": base, "role": role, "precondition": "P1 knows more than the source (probe)",
                             "measured": str(d), "holds": d.lo > 0})
        if base in ft_of:
            ft = ft_of[base]
            if role == "other architecture":
                value = sum(ft.values()) / len(ft)
                rows.append({"base": base, "role": role, "precondition": f"P4 a working base: its FT ≥ {P4_FLOOR:g}",
                             "measured": f"{value:.3f}", "holds": value >= P4_FLOOR})
            elif base != source and source in ft_of:
                docs = sorted(ft)
                d = paired([[ft[i] for i in docs]], [[ft_of[source][i] for i in docs]])
                rows.append({"base": base, "role": role, "precondition": "P2 its FT beats the source's FT",
                             "measured": str(d), "holds": d.lo > 0})
    return rows  # P0 (over seeds) is on the report's world card (prt_bench/report/card.py)


# -------------------------------------------------------------------- all of it

def diagnose(run: Run, n_train: int = 200) -> dict[str, Any]:
    transfers = run.section.transfers
    source = transfers[0].source
    targets = list(dict.fromkeys([source] + [t.target for t in transfers if t.source == source]))
    probed = probe(run, targets)
    return {"suite": run.suite.name, "task": run.task, "metric": run.metric, "source": source, "lam": run.lam,
            "world card": world_card(run, probed, source), "split": split(run), "departures": departures(run),
            "probe": probed,
            "distance": distance(run, source, targets, n_train),
            "divergence": [d for m in ("prt", "eft") for t in targets
                           if (d := divergence(run, source, t, m)) is not None],
            "missed": [d for t in targets if (d := divergence(run, source, t, "prt", among="missed")) is not None]}


def markdown(found: dict[str, Any]) -> str:
    """The diagnosis as a page (docs/mini-lm.md explains what each part shows)."""
    lines = [f"# Diagnosis of {found['suite']} / {found['task']} (source {found['source']}, λ = {found['lam']:g})",
             "", f"`prt-bench diagnose lm --suite {found['suite']}`; metric `{found['metric']}`.", ""]
    lines += ["## 0. World card: the preconditions, measured", ""]
    shown = {True: "yes", False: "**no**", None: "–"}
    lines += _table([{**r, "holds": shown[r["holds"]]} for r in found["world card"]])
    lines += ["", "## 1. Score by group of test problems (mean over the fine-tuning seeds; per seed: each group's "
                  "in turn)", ""]
    lines += _table(found["split"])
    if found.get("departures"):
        lines += ["", "## 1b. Where the answers first leave the gold (share of the problems, per seed)", ""]
        lines += _table(found["departures"])
    if found["probe"]:
        lines += ["", "## 2. What each base knows alone: calculations of the gold answers, teacher-forced", ""]
        lines += _table([{k: v for k, v in r.items() if k != "items"} for r in found["probe"]])
    lines += ["", "## 3. Distance on the fine-tuning data (mean per response token, nats)", ""]
    lines += _table(found["distance"])
    for key, title, count in (("divergence", "## 4. Where PRT and EFT leave the gold answer on the problems lost in "
                               "the transfer", "lost in transfer"),
                              ("missed", "## 4b. Where PRT leaves the gold answer on the problems the target's own "
                               "FT solves (the knowledge it does not pass on)", "solved by the target's FT")):
        lines += ["", title, ""]
        rows = []
        for d in found[key]:
            s = d["summary"]
            rows.append({"method": d["method"], "transfer": f"{d['source']} → {d['target']}",
                         "wrong": f"{d['wrong']}/{d['n']}",
                         count: d["lost"],
                         "re-tokenised, skipped": d["skipped"],
                         **{k: v for k, v in s.items() if k != "where"},
                         "where (most first)": "; ".join(f"{k} {v}" for k, v in s.get("where", {}).items())})
        lines += _table(rows)
        for d in found[key]:
            if d["events"]:
                lines += ["", f"First divergences of {d['method']} {d['source']} → {d['target']} (margins: "
                              f"log p(gold) − log p(made), the token {d['method']} wrote):", ""]
                lines += _table([{k: _shown(k, v) for k, v in e.items()} for e in d["events"][:8]])
    return "\n".join(lines) + "\n"


def _shown(key: str, value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(map(repr, value))
    return repr(value) if key in ("gold", "made") else value


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v).replace("|", "\\|").replace("\n", "\\n")
