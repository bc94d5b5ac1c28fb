"""The mini LM world's generators: deterministic, disjoint splits, IFEval-style checker."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from types import SimpleNamespace

import pytest

from prt_bench.mini.lm import corpus, gsm, ifeval


def test_gsm_same_seed_gives_same_problems():
    assert gsm.generate(50, 20, seed=3) == gsm.generate(50, 20, seed=3)


def test_gsm_other_seed_gives_other_problems():
    assert gsm.generate(50, 20, seed=3)["train"] != gsm.generate(50, 20, seed=4)["train"]


def test_gsm_answers_end_in_the_target_after_hashes():
    for row in gsm.generate(100, 40)["test"]:
        assert row["answer"].endswith(f"#### {row['target']}")
        assert row["response"] == " " + row["answer"]
        assert row["prompt"] == f"Question: {row['question']}\nAnswer:"


def test_gsm_reasoning_lines_compute_the_answer():
    for row in gsm.generate(200, 50)["train"]:
        calcs = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", row["answer"])
        assert len(calcs) == row["steps"] and 1 <= row["steps"] <= 4
        for a, op, b, c in calcs:
            assert eval(f"{a} {op} {b}") == int(c)
        assert int(calcs[-1][3]) == row["target"]


def test_gsm_test_split_is_disjoint_from_train():
    d = gsm.generate(500, 100)
    assert not {r["question"] for r in d["train"]} & {r["question"] for r in d["test"]}


def test_gsm_test_split_holds_out_names():
    d = gsm.generate(300, 60)
    assert {r["question"].split()[0] for r in d["train"]} <= set(gsm.TRAIN_NAMES)
    assert {r["question"].split()[0] for r in d["test"]} <= set(gsm.TEST_NAMES)


def test_gsm_test_split_can_hold_out_a_number_range():
    cfg = gsm.GsmConfig(train_max=20, test_max=30)  # test_min defaults to train_max + 1
    d = gsm.generate(300, 60, config=cfg)
    assert max(int(n) for r in d["train"] for n in re.findall(r"\d+", r["answer"])) <= cfg.train_max
    assert all(int(re.findall(r"\d+", r["question"])[0]) > cfg.train_max for r in d["test"])


def test_gsm_test_start_values_follow_test_min():
    cfg = gsm.GsmConfig(train_max=30, test_min=1, test_max=30)
    starts = [int(re.findall(r"\d+", r["question"])[0]) for r in gsm.generate(50, 200, config=cfg)["test"]]
    assert min(starts) <= 10 and max(starts) <= 30


HELD = ("wins", "uses up", "times as big")


def test_gsm_held_out_phrasings_appear_in_test_only_in_their_share():
    cfg = gsm.GsmConfig(held_out_share=0.4)
    d = gsm.generate(300, 400, config=cfg)
    assert not any(h in r["question"] for r in d["train"] for h in HELD)
    held = [sum(r["question"].count(h) for h in HELD) for r in d["test"]]
    assert max(held) == 1  # one held-out step at most per problem
    assert 0.3 < sum(held) / len(held) < 0.5


def test_gsm_held_out_share_zero_uses_train_phrasings_only():
    d = gsm.generate(50, 100, config=gsm.GsmConfig(held_out_share=0.0))
    assert not any(h in r["question"] for r in d["test"] for h in HELD)


def test_corpus_is_deterministic_and_has_no_task_format():
    cfg = corpus.CorpusConfig(n_fact_docs=20, n_story_docs=20, n_prose_docs=5)
    docs = corpus.generate(cfg)
    assert docs == corpus.generate(cfg)
    assert not any("####" in d or "Question:" in d for d in docs)


def test_corpus_v2_covers_numbers_v1_does_not():
    small = corpus.generate(corpus.CorpusConfig(max_number=20, n_fact_docs=50, n_story_docs=0, n_prose_docs=0))
    big = corpus.generate(corpus.CorpusConfig(max_number=40, n_fact_docs=50, n_story_docs=0, n_prose_docs=0))
    top = lambda docs: max(int(n) for d in docs for n in re.findall(r"\d+", d))  # noqa: E731
    assert top(small) <= 20 < top(big) <= 40


def test_ifeval_is_deterministic_and_test_topics_are_held_out():
    d = ifeval.generate(60, 20, seed=1)
    assert d == ifeval.generate(60, 20, seed=1)
    assert all(any(t in r["prompt"] for t in ifeval.TEST_TOPICS) for r in d["test"])
    assert not any(any(t in r["prompt"] for t in ifeval.TEST_TOPICS) for r in d["train"])


def test_ifeval_ideal_responses_follow_every_instruction():
    for row in ifeval.generate(400, 0)["train"]:
        assert ifeval.check(row, row["response"])["prompt_level_strict_acc"], row


def _doc(*pairs):
    return {"instruction_id_list": [p[0] for p in pairs], "kwargs": [p[1] for p in pairs]}


@pytest.mark.parametrize("iid,kw,good,bad", [
    ("change_case:english_lowercase", {}, "all quiet here.", "All quiet here."),
    ("change_case:english_capital", {}, "ALL QUIET 3.", "ALL quiet."),
    ("punctuation:no_comma", {}, "no commas here", "one, comma"),
    ("startend:quotation", {}, '"quoted"', 'not "quoted"'),
    ("startend:end_checker", {"end_phrase": "The end"}, "A story. The end", "The end. More words"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("length_constraints:number_words", {"relation": "less than", "num_words": 4}, "one two three", "one two three four"),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 3}, "one two three", "one two"),
    ("keywords:existence", {"keywords": ["sun", "blue"]}, "The Sun is blue.", "The sun is red."),
])
def test_checker_accepts_following_and_rejects_breaking_responses(iid, kw, good, bad):
    assert ifeval.check_instruction(iid, kw, good)
    assert not ifeval.check_instruction(iid, kw, bad)


def test_checker_rejects_empty_responses():
    assert not ifeval.check_instruction("punctuation:no_comma", {}, "   ")


def test_checker_scores_prompt_and_instruction_levels():
    doc = _doc(("punctuation:no_comma", {}), ("change_case:english_lowercase", {}))
    r = ifeval.check(doc, "Hello there")
    assert r["inst_level_strict_acc"] == [True, False]
    assert r["prompt_level_strict_acc"] is False


def test_loose_score_forgives_a_preamble_line_and_asterisks():
    doc = _doc(("startend:quotation", {}))
    response = 'Sure, here it is:\n"**a quoted note**"'
    assert not ifeval.check(doc, response)["prompt_level_strict_acc"]
    assert ifeval.check(doc, response)["prompt_level_loose_acc"]


def test_ifeval_task_aggregates_instruction_level_accuracy():
    import importlib.util
    from prt_bench.io import REPO_ROOT

    spec = importlib.util.spec_from_file_location("mini_ifeval_utils", REPO_ROOT / "tasks/mini_ifeval/utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = json.loads(json.dumps(_doc(("punctuation:no_comma", {}), ("change_case:english_capital", {}))))
    scores = utils.process_results(doc, ["NO COMMAS"])
    assert scores["prompt_level_strict_acc"] and scores["inst_level_loose_acc"] == [True, True]
    assert utils.agg_inst_level_acc([[True, False], [True]]) == pytest.approx(2 / 3)


def test_gsm_answer_lines_restate_the_anchored_steps_in_order():
    for row in gsm.generate(100, 30)["test"]:
        lines = row["answer"].split("\n")
        steps = lines[1:-1]
        assert [ln.split()[0] for ln in steps] == gsm.ANCHORS[: row["steps"]]
        for ln in steps:
            assert ln.split(", so ")[0] + "." in row["question"]


def test_held_out_phrasing_finds_the_held_out_step_in_questions_and_answer_lines():
    """What `prt-bench diagnose lm` groups problems and answer lines by."""
    import random

    rng = random.Random(3)
    for held in (None, 0, 1, 2):
        for _ in range(100):
            p = gsm.make_problem(rng, gsm.TEST_NAMES, 1, 30, 3, held)
            lines = p["answer"].split("\n")[1:-1]  # one line per step
            assert gsm.held_out_phrasing(p["question"]) == (held is not None and held < len(lines))
            assert [gsm.held_out_phrasing(line) for line in lines] == [k == held for k in range(len(lines))]


def _probe_run(tmp_path, path, docs):
    """A diagnosis Run over mini_gsm `docs` with one base "m" at `path` and no suite behind it."""
    from prt_bench.lm.diagnose import Run

    return Run(suite=None, section=None, task="mini_gsm", lm_task="mini_gsm", metric="", results=tmp_path,
               runs=tmp_path, records={}, cells=[], later_seeds=[], bases={"m": str(path)}, docs=docs,
               prompts=[d["prompt"] for d in docs], targets=[" " + d["answer"] for d in docs], train_rows=[], lam=1.0)


def test_diagnosis_probe_scores_every_calculation_of_the_gold_answers(tmp_path):
    """The knowledge probe teacher-forces each calculation of the gold answers, grouped by phrasing."""
    from prt_bench.lm.diagnose import HELD_OUT, MISSES, NUMBER_FROM_PROMPT, OPENING, ORDINARY, RESTATES, probe
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    path = build_tiny_lm(tmp_path / "m", "llama", byte_level_tokenizer(), hidden=16, layers=1)
    docs = gsm.generate(20, 12)["test"]
    run = _probe_run(tmp_path, path, docs)
    (row,) = probe(run, ["m"])
    lines = [line for d in docs for line in d["answer"].split("\n") if " = " in line]
    held = sum(gsm.held_out_phrasing(line) for line in lines)
    assert (row[f"n {ORDINARY}"], row.get(f"n {HELD_OUT}", 0)) == (len(lines) - held, held)
    assert 0 <= row["all"] <= 1 and row[f"n {RESTATES}"] == 12 and 0 <= row[RESTATES] <= 1
    assert 0 <= row[OPENING] <= 1 and row[f"{OPENING}: median log p"] <= 0

    # A model that always writes the token that comes next scores 1 on every item, one that never
    # does scores 0: the probe reads the predictions at the teacher-forced positions.
    import torch

    class Next(torch.nn.Module):
        def __init__(self, right: bool):
            super().__init__()
            self.right = right

        def forward(self, input_ids):
            ids = input_ids[0]
            logits = torch.zeros(1, len(ids), 512)
            logits[0, torch.arange(len(ids) - 1), ids[1:] if self.right else (ids[1:] + 1) % 512] = 1.0
            return SimpleNamespace(logits=logits)

    for right in (True, False):
        run.model = lambda path, right=right: Next(right)
        (row,) = probe(run, ["m"])
        assert row["all"] == row[RESTATES] == row[OPENING] == float(right)
        assert [row[f"{MISSES}: {part}"] for part in ("value", "operator", "number", "result")] == [1 - right] * 4

    # One that is right everywhere but at a step's number (what follows `+ `, `- ` or `* `) misses
    # that part of every calculation and no other.
    decoded = {}

    class WrongNumber(torch.nn.Module):
        def forward(self, input_ids):
            ids = input_ids[0].tolist()
            text = [decoded.setdefault(i, run.tokenizer.decode([i])) for i in ids]
            wrong = [k >= 2 and text[k - 1] == " " and text[k - 2] in "+-*" for k in range(len(ids))]
            logits = torch.zeros(1, len(ids), 512)
            for k in range(1, len(ids)):
                logits[0, k - 1, (ids[k] + 1) % 512 if wrong[k] else ids[k]] = 1.0
            return SimpleNamespace(logits=logits)

    run.model = lambda path: WrongNumber()
    (row,) = probe(run, ["m"])
    assert row["all"] == 0 and row[RESTATES] == row[OPENING] == 1
    assert [row[f"{MISSES}: {part}"] for part in ("value", "operator", "number", "result")] == [0, 0, 1, 0]
    assert 0 <= row[NUMBER_FROM_PROMPT] <= 1


def test_the_diagnosis_probe_reads_a_lead_line_s_copied_step_number_apart(tmp_path):
    """In "lead" answer lines the probe also scores the step's number copied after the anchor,
    apart from the calculation; other styles have no such column."""
    import torch

    from prt_bench.lm.diagnose import LEAD_NUMBER, MISSES, probe
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    path = build_tiny_lm(tmp_path / "m", "llama", byte_level_tokenizer(), hidden=16, layers=1)
    run_on = lambda docs: _probe_run(tmp_path, path, docs)  # noqa: E731

    (row,) = probe(run_on(gsm.generate(20, 12, config=gsm.GsmConfig(answer_lines="result"))["test"]), ["m"])
    assert LEAD_NUMBER not in row
    docs = gsm.generate(20, 12, config=gsm.GsmConfig(answer_lines="lead"))["test"]
    run = run_on(docs)
    (row,) = probe(run, ["m"])
    n_leads = sum(len(gsm.LEAD.findall(d["answer"])) for d in docs)
    assert row[f"n {LEAD_NUMBER}"] == n_leads > 0 and 0 <= row[LEAD_NUMBER] <= 1

    # A model right everywhere but at a line's lead number misses every lead and nothing of the
    # calculations.
    decoded = {}

    class WrongLead(torch.nn.Module):
        def forward(self, input_ids):
            ids = input_ids[0].tolist()
            text = "".join(decoded.setdefault(i, run.tokenizer.decode([i])) for i in ids)
            ends = [len("".join(decoded[i] for i in ids[:k + 1])) for k in range(len(ids))]
            led = {c for m in re.finditer(r"\n(?:First|Then|Next|Later) (\d+):", text) for c in range(*m.span(1))}
            logits = torch.zeros(1, len(ids), 512)
            for k in range(1, len(ids)):
                logits[0, k - 1, (ids[k] + 1) % 512 if ends[k - 1] in led else ids[k]] = 1.0
            return SimpleNamespace(logits=logits)

    run.model = lambda path: WrongLead()
    (row,) = probe(run, ["m"])
    assert row[LEAD_NUMBER] == 1 and row["all"] == 1
    assert row[f"{LEAD_NUMBER}, by anchor"].startswith("First 1.000 of ")
    assert [row[f"{MISSES}: {part}"] for part in ("value", "operator", "number", "result")] == [0, 0, 0, 0]


def test_a_preamble_moves_the_story_off_the_document_start_and_nothing_else():
    """With preamble_share 1 every story opens with a prose sentence before its name; with 0 the
    corpus is the default's, document for document."""
    base = dict(n_fact_docs=0, n_story_docs=40, n_prose_docs=0, seed=3)
    plain = corpus.generate(corpus.CorpusConfig(**base))
    assert plain == corpus.generate(corpus.CorpusConfig(**base, preamble_share=0.0))
    names = set(gsm.TRAIN_NAMES + gsm.TEST_NAMES)
    assert all(d.split()[0] in names for d in plain)
    opened = corpus.generate(corpus.CorpusConfig(**base, preamble_share=1.0))
    for doc in opened:
        before, story = doc.split(". ", 1)
        assert before and story.split()[0] in names and " Let us count. " + story.split()[0] in story


def test_test_problems_can_be_told_with_the_training_names_leaving_the_train_split_alone():
    held = gsm.generate(200, 60, seed=3)
    seen = gsm.generate(200, 60, seed=3, config=gsm.GsmConfig(test_names="train"))
    assert held["train"] == seen["train"]  # the fine-tuning data (and so the tokenizer) are the same
    first = lambda split: {p["answer"].split(" ")[0] for p in split}  # noqa: E731
    assert first(held["test"]) <= set(gsm.TEST_NAMES) and first(seen["test"]) <= set(gsm.TRAIN_NAMES)
    assert not {p["question"] for p in seen["test"]} & {p["question"] for p in seen["train"]}
    with pytest.raises(ValueError, match="test_names must be 'held_out' or 'train'"):
        gsm.GsmConfig(test_names="new")


def test_the_diagnosis_places_each_lost_answer_where_it_first_leaves_the_gold():
    from prt_bench.lm.diagnose import OPENS_FT, departures

    cell = SimpleNamespace(method="ft_source", source="s", target="s", seed=0)
    gold = [" Nora has 3 pens.\nFirst she buys 2 more pens, so she has 3 + 2 = 5.\n#### 5"] * 5
    made = [gold[0],                                                             # right
            " Mia has 3 pens.\nFirst she buys 2 more pens, so she has 3 + 2 = 5.\n#### 5",  # opens as FT answers do
            " she has 3 pens.\n#### 3",                                           # another first word
            " Nora has 4 pens.\n#### 6",                                          # later in the first line
            " Nora has 3 pens.\nFirst she buys 9 more pens, so she has 3 + 9 = 12.\n#### 12"]  # after it
    rows = [{"doc_id": str(i), "filter": "strict-match", "resps": [[m]]} for i, m in enumerate(made)]
    run = SimpleNamespace(cells=[cell], scores=lambda c: {i: float(i == 0) for i in range(5)},
                          rows=lambda c: rows, targets=gold, metric="exact_match,strict-match",
                          train_rows=[{"prompt": "Q", "response": " Mia has 1 pen.\n#### 1"}])
    (row,) = departures(run)
    assert row["problems"] == 5 and all(row[k] == pytest.approx(0.2) for k in (
        "right", OPENS_FT, "first word: another", "later in the first line", "after the first line"))


def test_the_diagnosis_splits_each_cell_by_group_over_every_fine_tuning_seed():
    """Section 1 reads a cell's score per group of problems in each seed the run holds and shows
    the mean; a cell of another transfer is not taken for a seed of this one."""
    from prt_bench.lm.diagnose import HELD_OUT, ORDINARY, split

    docs = gsm.generate(20, 12)["test"]
    held = [gsm.held_out_phrasing(d["question"]) for d in docs]
    assert 0 < sum(held) < len(docs)
    cell = lambda seed, target="t": SimpleNamespace(method="prt", source="s", target=target,  # noqa: E731
                                                    scenario="update", seed=seed)
    first, second, other = cell(0), cell(1), cell(1, "u")
    right = {id(first): lambda i, h: h, id(second): lambda i, h: True, id(other): lambda i, h: False}
    run = SimpleNamespace(lm_task="mini_gsm", docs=docs, cells=[first], later_seeds=[second, other],
                          scores=lambda c: {i: float(right[id(c)](i, h)) for i, h in enumerate(held)})
    (row,) = split(run)
    assert row["seeds"] == 2
    assert row[HELD_OUT] == pytest.approx(1.0) and row[ORDINARY] == pytest.approx(0.5)  # seed 0: 1 / 0, seed 1: 1 / 1
    assert row["all"] == pytest.approx((sum(held) / len(held) + 1) / 2)
    assert (row[f"n {HELD_OUT}"], row[f"n {ORDINARY}"]) == (sum(held), len(docs) - sum(held))
    assert row["per seed"] == "0.000 1.000 / 1.000 1.000"


def test_the_probe_items_are_each_calculation_of_the_gold_answers_with_what_precedes_it():
    """mini_gsm's knowledge probe: one item per calculation of each gold answer, in order; the
    context is the task's prompt and the answer up to the calculation, so context + " " +
    calculation is a prefix of prompt + " " + answer that ends with that calculation."""
    from prt_bench.mini.lm.tasks import CALC, calculation_items

    docs = gsm.generate(50, 30, seed=3)["test"]
    items = calculation_items(docs)
    assert len(items) == sum(len(CALC.findall(d["answer"])) for d in docs) > len(docs)
    assert [i["doc"] for i in items] == sorted(i["doc"] for i in items)
    for item in items:
        doc = docs[item["doc"]]
        full = f"Question: {doc['question']}\nAnswer: {doc['answer']}"
        text = item["context"] + " " + item["calculation"]
        assert full.startswith(text) and item["context"].endswith(" has")
        line = full[full.rfind("\n", 0, len(text)) + 1:].split("\n")[0]  # the answer line it is on
        assert item["held_out_phrasing"] == gsm.held_out_phrasing(line)


def test_result_answer_lines_tell_each_step_by_its_anchor_and_calculation_only():
    """answer_lines: result keeps every problem (questions, numbers, targets) and writes each step's
    line as its anchor, pronoun and calculation: no word of its phrasing, held out or not."""
    restated = gsm.generate(100, 60, seed=3)
    result = gsm.generate(100, 60, seed=3, config=gsm.GsmConfig(answer_lines="result"))
    for a, b in zip(restated["train"] + restated["test"], result["train"] + result["test"]):
        assert (a["question"], a["target"], a["steps"]) == (b["question"], b["target"], b["steps"])
        lines_a, lines_b = a["answer"].split("\n"), b["answer"].split("\n")
        assert lines_a[0] == lines_b[0] and lines_a[-1] == lines_b[-1]
        for la, lb in zip(lines_a[1:-1], lines_b[1:-1]):
            anchor = la.split(" ", 1)[0]
            assert lb == f"{anchor} {la.split(', so ')[1]}"
            assert lb.split(" ")[1] in ("she", "he") and not gsm.held_out_phrasing(lb)
            # the step it tells is still found, by its anchor, in the question
            assert gsm.line_held_out(b["question"], lb) == gsm.held_out_phrasing(la)
    assert any(gsm.held_out_phrasing(p["question"]) for p in result["test"])
    with pytest.raises(ValueError, match="answer_lines must be one of restate, result"):
        gsm.GsmConfig(answer_lines="brief")


def test_lead_answer_lines_copy_the_step_number_the_question_leads_with():
    """answer_lines: lead is "result" with each step's number told right after its anchor, in the
    question's sentence and in the answer line: the same problems, and a step's number is then a
    plain copy of the words before it ("First 7:"), the phrasing's words still never restated."""
    result = gsm.generate(100, 60, seed=3, config=gsm.GsmConfig(answer_lines="result"))
    lead = gsm.generate(100, 60, seed=3, config=gsm.GsmConfig(answer_lines="lead"))
    unlead = lambda text: re.sub(r"\b(First|Then|Next|Later) \d+: ", r"\1 ", text)  # noqa: E731
    leads = 0
    for a, b in zip(result["train"] + result["test"], lead["train"] + lead["test"]):
        assert (a["target"], a["steps"]) == (b["target"], b["steps"])
        assert unlead(b["question"]) == a["question"] and unlead(b["answer"]) == a["answer"]
        told = re.findall(r"\b(?:First|Then|Next|Later) [^.]*\.", b["question"])
        for sentence, line in zip(told, b["answer"].split("\n")[1:-1]):
            m = gsm.LEAD.match(sentence)
            # a sentence that tells a number leads with it, and its answer line copies that lead
            assert bool(m) == bool(re.search(r"\d", sentence.split(" ", 1)[1]))
            if m:
                leads += 1
                assert m.group("number") in sentence[m.end():].split() and line.startswith(m.group(0) + " ")
                calc = re.search(r"\d+ ([-+*]) (\d+) = \d+", line)
                assert calc.group(2) == m.group("number")
            assert not gsm.held_out_phrasing(line)
            assert gsm.line_held_out(b["question"], line) == gsm.held_out_phrasing(sentence)
    assert leads > 100 and any(gsm.held_out_phrasing(p["question"]) for p in lead["test"])
    # the restating and result styles are as before: no lead anywhere
    assert not any(gsm.LEAD.search(p["question"]) for p in result["test"] + gsm.generate(20, 20)["test"])


def test_a_corpus_counts_its_stories_through_in_the_answers_style():
    base = dict(n_fact_docs=0, n_story_docs=40, n_prose_docs=0, seed=3, held_out_phrasings=True)
    plain = corpus.generate(corpus.CorpusConfig(**base))
    result = corpus.generate(corpus.CorpusConfig(**base, counted_lines="result"))
    assert plain == corpus.generate(corpus.CorpusConfig(**base, counted_lines="restate"))
    for a, b in zip(plain, result):
        told_a, counted_a = a.split(" Let us count. ")
        told_b, counted_b = b.split(" Let us count. ")
        assert told_a == told_b and ", so " in counted_a and ", so " not in counted_b
        assert re.findall(r"\d+ [-+*] \d+ = \d+", counted_a) == re.findall(r"\d+ [-+*] \d+ = \d+", counted_b)
    assert any(gsm.held_out_phrasing(d) for d in result)
    # laid out in lines, as the answers are: the same words, each counted step on a line of its own
    lined = corpus.generate(corpus.CorpusConfig(**base, counted_lines="result", counted_layout="lines"))
    for a, b in zip(result, lined):
        assert a == b.replace("\n", " ") and b.split("\n")[0].endswith(" Let us count.")
        assert all(re.fullmatch(r"(First|Then|Next|Later) (she|he) has \d+ [-+*] \d+ = \d+\.", line)
                   for line in b.split("\n")[2:-1])
    with pytest.raises(ValueError, match="answer_lines must be one of"):
        corpus.CorpusConfig(counted_lines="brief")
    with pytest.raises(ValueError, match="counted_layout must be"):
        corpus.CorpusConfig(counted_layout="table")


def test_a_question_can_tell_each_sentence_on_a_line_of_its_own():
    """question_layout: lines puts each sentence of the question on a line of its own, so that a
    step's anchor is the same token in the question and in its answer line; nothing else changes."""
    para = gsm.generate(60, 40, seed=3, config=gsm.GsmConfig(answer_lines="lead"))
    lines = gsm.generate(60, 40, seed=3, config=gsm.GsmConfig(answer_lines="lead", question_layout="lines"))
    for a, b in zip(para["train"] + para["test"], lines["train"] + lines["test"]):
        assert {k: v for k, v in a.items() if k not in ("question", "prompt")} == \
            {k: v for k, v in b.items() if k not in ("question", "prompt")}
        assert b["question"].replace("\n", " ") == a["question"] and b["question"].count("\n") == b["steps"] + 1
        told, answered = b["question"].split("\n")[:-1], b["answer"].split("\n")[:-1]
        assert [line.split(" ", 1)[0] for line in told] == [line.split(" ", 1)[0] for line in answered]
        assert b["prompt"] == f"Question: {b['question']}\nAnswer:"
    with pytest.raises(ValueError, match="question_layout must be"):
        gsm.GsmConfig(question_layout="table")


def test_a_corpus_counts_its_stories_through_in_the_lead_style():
    """counted_lines: lead tells each story's steps with their numbers led and counts them through
    in the answers' lead lines; the stories are those of the result style otherwise."""
    base = dict(n_fact_docs=5, n_story_docs=40, n_prose_docs=5, seed=3, held_out_phrasings=True, counted_layout="lines")
    result = corpus.generate(corpus.CorpusConfig(**base, counted_lines="result"))
    lead = corpus.generate(corpus.CorpusConfig(**base, counted_lines="lead"))
    assert [re.sub(r"\b(First|Then|Next|Later) \d+: ", r"\1 ", d) for d in lead] == result
    stories = [d for d in lead if " Let us count." in d]
    assert sum(len(gsm.LEAD.findall(d)) for d in stories) > 40
    for d in stories:
        told, counted = d.split(" Let us count.")
        assert gsm.LEAD.findall(told) == gsm.LEAD.findall(counted)
    # told in lines, as the questions can be: the same words, each told sentence on a line of its own
    lined = corpus.generate(corpus.CorpusConfig(**base, counted_lines="lead", told_layout="lines"))
    for a, b in zip(lead, lined):
        if " Let us count." in a:
            assert a.split(" Let us count.")[0] == b.split(" Let us count.")[0].replace("\n", " ")
            assert a.split(" Let us count.")[1] == b.split(" Let us count.")[1]
        else:
            assert a == b
    with pytest.raises(ValueError, match="told_layout must be"):
        corpus.CorpusConfig(told_layout="table")


def test_copy_drills_write_a_list_of_the_world_s_words_twice_and_leave_the_rest_alone():
    """n_copy_docs adds that many drills: 4 to 12 different words of the world (names, items,
    anchors, numbers up to max_number), then the same list again; every other document is the
    corpus's without them, and the same config gives the same drills."""
    base = dict(n_fact_docs=10, n_story_docs=30, n_prose_docs=5, seed=3, max_number=20)
    plain = corpus.generate(corpus.CorpusConfig(**base))
    drilled = corpus.generate(corpus.CorpusConfig(**base, n_copy_docs=50))
    assert drilled == corpus.generate(corpus.CorpusConfig(**base, n_copy_docs=50))
    drills = [d for d in drilled if d.startswith("List: ")]
    assert len(drills) == 50 and sorted(d for d in drilled if d not in drills) == sorted(plain)
    pool = set(gsm.TRAIN_NAMES + gsm.TEST_NAMES + gsm.ITEMS + gsm.ANCHORS + [str(n) for n in range(21)])
    lengths = set()
    for d in drills:
        m = re.fullmatch(r"List: (.+)\.\nThe list again: (.+)\.", d)
        assert m and m.group(1) == m.group(2)
        words = m.group(1).split(" ")
        assert set(words) <= pool and len(set(words)) == len(words) and 4 <= len(words) <= 12
        lengths.add(len(words))
    assert len(lengths) > 3


def test_a_corpus_can_count_a_share_of_its_stories_through_the_restating_way():
    """restate_share: that share of the stories is counted through restating each step's words
    (", so she has ...") whatever counted_lines says; at 0 the corpus is the default's, document
    for document; the calculations are the same either way."""
    base = dict(n_fact_docs=10, n_story_docs=60, n_prose_docs=0, seed=3, counted_lines="result", counted_layout="lines")
    plain = corpus.generate(corpus.CorpusConfig(**base))
    assert plain == corpus.generate(corpus.CorpusConfig(**base, restate_share=0.0))
    counted = lambda docs: [d.split(" Let us count.")[1] for d in docs if " Let us count." in d]  # noqa: E731
    assert not any(", so " in c for c in counted(plain))
    full = counted(corpus.generate(corpus.CorpusConfig(**base, restate_share=1.0)))
    assert len(full) == 60 and all(", so " in c for c in full)
    assert all(re.fullmatch(r"(First|Then|Next|Later) .+, so (she|he) has \d+ [-+*] \d+ = \d+\.", line)
               for c in full for line in c.split("\n")[2:-1])
    half = counted(corpus.generate(corpus.CorpusConfig(**base, restate_share=0.5)))
    assert 10 < sum(", so " in c for c in half) < 50


def test_a_corpus_can_use_the_words_of_the_prompt_frame_without_the_task_format():
    """asked_share / quiz_share put the words of mini_gsm's prompt frame into the corpus (a story
    asks its question before it is counted through; a fact is asked and answered); at 0 the corpus
    is the default's, document for document, and the task's `####` never appears."""
    base = dict(n_fact_docs=30, n_story_docs=40, n_prose_docs=0, seed=3, counted_lines="result", counted_layout="lines")
    plain = corpus.generate(corpus.CorpusConfig(**base))
    assert plain == corpus.generate(corpus.CorpusConfig(**base, asked_share=0.0, quiz_share=0.0))
    words = lambda texts: {w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)}  # noqa: E731
    train = gsm.generate(50, 10, config=gsm.GsmConfig(answer_lines="result"))["train"]
    frame = {"Question", ":", "How", "many", "does", "have", "now", "?", "Answer"}
    assert frame <= words(r["prompt"] for r in train) and not frame & words(plain)

    full = corpus.generate(corpus.CorpusConfig(**base, asked_share=1.0, quiz_share=1.0))
    stories = [d for d in full if " Let us count." in d]
    facts = [d for d in full if d not in stories]
    assert len(stories) == 40 and len(facts) == 30
    for doc in stories:
        name, item = re.match(r"(\w+) has \d+ (\w+)\.", doc).groups()
        assert f" How many {item} does {name} have now? Let us count.\n{name} has " in doc
    for doc in facts:
        lines = doc.split("\n")
        assert len(lines) == 16
        for q, a in zip(lines[::2], lines[1::2]):
            asked = re.fullmatch(r"Question: (\d+ [-+*] \d+) = \?", q).group(1)
            assert re.fullmatch(re.escape(f"Answer: {asked} = ") + r"\d+", a) and eval(asked) == int(a.rsplit(" ", 1)[1])
    half = corpus.generate(corpus.CorpusConfig(**base, asked_share=0.5, quiz_share=0.5))
    assert frame <= words(half) and not any("####" in d for d in half)
    assert 0 < sum("How many" in d for d in half) < 40


def test_the_diagnosis_lists_the_prompt_tokens_a_base_never_pretrained_on(tmp_path):
    """A mini base's manifest names its corpus and those of the bases it went on from; the probe
    lists the prompt tokens none of them holds, and the world card's P1 row holds only at none."""
    from prt_bench.io import MANIFEST
    from prt_bench.lm.diagnose import UNSEEN, Run, probe, unseen_prompt_tokens, world_card
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    split = gsm.generate(20, 6, config=gsm.GsmConfig(answer_lines="result", test_names="train"))
    docs = split["test"]
    small = dict(n_fact_docs=20, n_story_docs=40, n_prose_docs=0, counted_lines="result", counted_layout="lines")
    other = build_tiny_lm(tmp_path / "other", "llama", byte_level_tokenizer(), hidden=16, layers=1)
    bases = {}
    for name, child in (("plain", small), ("asked", {**small, "asked_share": 1.0, "quiz_share": 1.0})):
        path = shutil.copytree(other, tmp_path / name)
        (path / MANIFEST).write_text(json.dumps({"config": {"corpus": child, "init": {"corpus": small}}}))
        bases[name] = str(path)
    run = Run(suite=None, section=SimpleNamespace(transfers=[]), task="mini_gsm", lm_task="mini_gsm", metric="",
              results=tmp_path, runs=tmp_path, records={}, cells=[], later_seeds=[], bases=bases, docs=docs,
              prompts=[d["prompt"] for d in docs], targets=[" " + d["answer"] for d in docs],
              train_rows=split["train"], lam=1.0)
    # byte-level tokens: "Q", ":" and "?" occur in no plain document; the asked corpus has them all
    assert {"Q", ":", "?"} <= set(unseen_prompt_tokens(run, "plain")) and unseen_prompt_tokens(run, "asked") == []
    plain, asked = probe(run, ["plain", "asked"])
    assert plain[UNSEEN] >= 3 and asked[UNSEEN] == 0
    card = {r["base"]: r for r in world_card(run, [plain, asked], "plain") if "reads the prompt" in r["precondition"]}
    assert card["plain"]["holds"] is False and "never seen" in card["plain"]["measured"]
    # a suite whose one transfer is the source to itself (the source alone, probed): one row per precondition
    run = dataclasses.replace(run, section=SimpleNamespace(transfers=[SimpleNamespace(source="plain", target="plain",
                                                                                       scenario="same_base")]))
    rows = [r["precondition"] for r in world_card(run, [plain], "plain")]
    assert len(rows) == len(set(rows)) == 3
    bases["other"] = str(other)
    assert unseen_prompt_tokens(run, "other") is None  # no corpus recorded: not a mini base


def test_the_diagnosis_names_the_part_of_an_answer_in_either_style():
    """A step's line is its calculation after ", so " where answers restate the steps, and all of it
    where they do not (answer_lines: result)."""
    from prt_bench.lm.diagnose import _where

    prompt = "Question: Mia has 3 pens. First she wins 2 more pens. How many pens does Mia have now?\nAnswer:"
    assert _where(" Mia has 3 pens.\nFirst she wins", " 2", prompt, True) == "restating a sentence: number"
    assert _where(" Mia has 3 pens.\nFirst she wins 2 more pens, so she has 3", " +", prompt, True) == \
        "calculation: symbol"
    assert _where(" Mia has 3 pens.\nFirst she has 3", " +", prompt, True, restates=False) == "calculation: symbol"
    assert _where(" Mia has 3 pens.\nFirst she has 3 +", " 2", prompt, True, restates=False) == "calculation: number"
    assert _where(" Mia has", " 3", prompt, True, restates=False) == "restating a sentence: number"
    assert _where(" Mia has 3 pens.\nFirst she has 3 + 2 = 5.\n####", " 5", prompt, True, restates=False) == \
        "final answer: number"
    # a lead line's step number (and the colon after it) is its lead, what follows its calculation
    assert _where(" Mia has 3 pens.\nFirst", " 2", prompt, True, restates=False) == "a line's lead: number"
    assert _where(" Mia has 3 pens.\nFirst 2", ":", prompt, True, restates=False) == "a line's lead: symbol"
    assert _where(" Mia has 3 pens.\nFirst 2: she has 3 +", " 2", prompt, True, restates=False) == \
        "calculation: number"
    assert _where(" Mia has 3 pens.\nFirst", " she", prompt, True, restates=False) == "calculation: word of the prompt"
