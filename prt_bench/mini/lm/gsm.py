"""mini_gsm: GSM8K-like arithmetic word problems of 1-4 steps, answered in reasoning lines
that end in `#### N`, as GSM8K's answers do.

Each step is one sentence of the story and one answer line that restates it and does its
calculation (`She buys 5 more apples, so she has 7 + 5 = 12.`), or (``answer_lines: result``)
that only does the calculation, opened by the step's anchor (`Then she has 7 + 5 = 12.`): the
answer then needs what the step's phrasing means, never its words.  ``answer_lines: lead`` is
"result" with the step's number led: the question's step sentence tells it right after its anchor
(`Then 5: she buys 5 more apples.`) and the answer line copies that lead before its calculation
(`Then 5: she has 7 + 5 = 12.`), so a step's number is copied from the words before it in the
prompt, not looked up behind its verb.  The test split holds out names and a number range
(every test problem starts above the train range), and a share of its problems has one step in
a phrasing the train split never uses, so a model passes it only by knowing the arithmetic and
the phrasings from pretraining, not by remembering training problems.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TRAIN_NAMES = ["Mia", "Tom", "Ava", "Leo", "Zoe", "Max", "Ivy", "Sam", "Eli", "Amy", "Ben", "Lea",
               "Noah", "Emma", "Liam", "Lily", "Jack", "Ella", "Owen", "Ruby"]
TEST_NAMES = ["Nora", "Finn", "Ada", "Hugo", "Iris", "Omar"]
# (noun, pronoun) pairs are by name; items are shared by both splits.
PRONOUN = {n: p for n, p in zip(TRAIN_NAMES + TEST_NAMES, "she he she he she he she he he she he she "
                                 "he she he she he she he she she he she he she he".split())}
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pens", "cards", "shells", "stamps", "cookies"]

# Phrasings per operation; the last of each list is held out of the train split.
ADD = ["{P} buys {b} more {item}.", "{P} finds {b} more {item}.", "{P} gets {b} more {item} from a friend.",
       "{P} wins {b} more {item}."]
SUB = ["{P} gives {b} {item} away.", "{P} loses {b} {item}.", "{P} sells {b} {item}.",
       "{P} uses up {b} {item}."]
MUL = ["The number of {item} {p} has doubles.", "The number of {item} {p} has triples."]
MUL_HELD = ["{P} makes {P2} pile of {item} {k} times as big."]
OPS = {"add": ADD, "sub": SUB}
# Step k of a story opens with ANCHORS[k]: the answer line of that step opens with it too, so a
# small model finds the sentence to restate by its anchor instead of counting sentences.
ANCHORS = ["First", "Then", "Next", "Later"]


@dataclass(frozen=True)
class GsmConfig:
    """Number ranges of the two splits (train values never exceed train_max; test problems
    start in [test_min, test_max], test_min defaulting to train_max + 1: a held-out range)."""
    train_max: int = 20
    test_max: int = 30
    test_min: int | None = None
    max_steps: int = 4  # at most len(ANCHORS)
    held_out_share: float = 0.4  # test problems with one step in a held-out phrasing
    # whose names the test problems use: "held_out" (names no training answer holds) or "train"
    # (the training problems' names: a test answer then opens with a name fine-tuning has seen)
    test_names: str = "held_out"
    # how an answer line tells a step: "restate" (the step's sentence, then its calculation),
    # "result" (the step's anchor, then its calculation; no word of the phrasing) or "lead"
    # ("result" after the anchor's copied lead, the step's number, which the question's step
    # sentence then tells right after its anchor too)
    answer_lines: str = "restate"
    # how the question tells its sentences: "paragraph" (run on) or "lines" (each on a line of its
    # own, as the answer's lines are: a step's anchor is then the same token in both, "\nFirst")
    question_layout: str = "paragraph"

    def __post_init__(self) -> None:
        if self.test_names not in ("held_out", "train"):
            raise ValueError(f"mini_gsm test_names must be 'held_out' or 'train', got {self.test_names!r}")
        check_answer_lines(self.answer_lines)
        if self.question_layout not in ("paragraph", "lines"):
            raise ValueError(f"mini_gsm question_layout must be 'paragraph' or 'lines', got {self.question_layout!r}")


ANSWER_LINES = ("restate", "result", "lead")


def check_answer_lines(style: str) -> None:
    if style not in ANSWER_LINES:
        raise ValueError(f"mini_gsm answer_lines must be one of {', '.join(ANSWER_LINES)}, got {style!r}")


def step_line(sentence: str, calc: str, style: str = "restate") -> str:
    """The answer line of one anchored step sentence (anchored in the same style) and its
    calculation, {p} unfilled."""
    if style == "lead":
        lead = LEAD.match(sentence)
        return f"{lead.group(0) if lead else sentence.split(' ', 1)[0]} {{p}} has {calc}."
    if style == "result":
        return f"{sentence.split(' ', 1)[0]} {{p}} has {calc}."
    return f"{sentence[:-1]}, so {{p}} has {calc}."


def _step(rng: random.Random, value: int, hi: int, held_out: bool) -> tuple[str, str, int] | None:
    """One story sentence and its answer line from the running `value`, or None if no op fits."""
    choices = []
    if value < hi:
        choices.append("add")
    if value > 1:
        choices.append("sub")
    if 2 * value <= hi and value > 0:
        choices.append("mul")
    if not choices:
        return None
    op = rng.choice(choices)
    if op == "mul":
        k = 3 if 3 * value <= hi and rng.random() < 0.5 else 2
        phr = MUL_HELD[0] if held_out else MUL[k - 2]
        return phr.replace("{k}", str(k)), f"{value} * {k} = {value * k}", value * k
    phrases = OPS[op]
    phr = phrases[-1] if held_out else rng.choice(phrases[:-1])
    if op == "add":
        b = rng.randint(1, hi - value)
        return phr.replace("{b}", str(b)), f"{value} + {b} = {value + b}", value + b
    b = rng.randint(1, value - 1)
    return phr.replace("{b}", str(b)), f"{value} - {b} = {value - b}", value - b


def make_problem(rng: random.Random, names: list[str], lo: int, hi: int, steps: int,
                 held_out_step: int | None = None, answer_lines: str = "restate",
                 question_layout: str = "paragraph") -> dict:
    """A problem whose every number lies in [0, hi] and whose start lies in [lo, hi]; step
    `held_out_step` (0-based), if given, uses a held-out phrasing; `answer_lines` and
    `question_layout` as GsmConfig's."""
    name = rng.choice(names)
    item = rng.choice(ITEMS)
    value = rng.randint(lo, hi)
    pron = PRONOUN[name]
    sentences = [f"{name} has {value} {item}."]
    lines = [sentences[0]]
    for k in range(steps):
        step = _step(rng, value, hi, k == held_out_step)
        if step is None:
            break
        sentence, calc, value = step
        sentence = anchored(k, sentence, answer_lines)
        sentences.append(sentence)
        # GSM8K's style: each line tells a step of the story (restated, or by its anchor) and its calculation.
        lines.append(step_line(sentence, calc, answer_lines))
    if len(lines) == 1:
        return make_problem(rng, names, lo, hi, steps, held_out_step, answer_lines, question_layout)
    sep = "\n" if question_layout == "lines" else " "
    question = fill(sep.join(sentences), pron, item) + f"{sep}How many {item} does {name} have now?"
    answer = fill("\n".join(lines), pron, item) + f"\n#### {value}"
    return {"question": question, "answer": answer, "steps": len(lines) - 1, "target": value}


def anchored(k: int, sentence: str, style: str = "restate") -> str:
    """Sentence of step k (0-based) with its anchor: "First she buys 3 more apples."; in the
    "lead" style the step's number, if the sentence tells one, comes right after the anchor:
    "First 3: she buys 3 more apples." """
    number = re.search(r"\b\d+\b", sentence) if style == "lead" else None
    anchor = f"{ANCHORS[k]} {number.group(0)}:" if number else ANCHORS[k]
    return f"{anchor} {sentence[0].lower()}{sentence[1:]}" if sentence[0] == "T" else f"{anchor} {sentence}"


# the lead of a "lead" step sentence or answer line: its anchor and the step's number
LEAD = re.compile(rf"(?:{'|'.join(ANCHORS)}) (?P<number>\d+):")


def fill(text: str, pron: str, item: str) -> str:
    """Put the pronouns and the item into a phrasing."""
    sub = {"{P}": pron, "{p}": pron, "{P2}": "his" if pron == "he" else "her", "{item}": item}
    for k, v in sub.items():
        text = text.replace(k, v)
    return text


def _row(p: dict) -> dict:
    # prompt/response: the plain SFT format the recipes read; the prompt is the task's doc_to_text.
    return {**p, "prompt": f"Question: {p['question']}\nAnswer:", "response": " " + p["answer"]}


def generate(n_train: int, n_test: int, seed: int = 0, config: GsmConfig = GsmConfig()) -> dict[str, list[dict]]:
    """The train and test splits; same arguments, same bytes.

    Test problems use held-out names (or the training names, ``test_names: train``) and start in
    [test_min, test_max]; a `held_out_share` of them
    has one step (at a random place) in a held-out phrasing; no test question appears in the
    train split.
    """
    rng = random.Random(seed)
    train, seen = [], set()
    while len(train) < n_train:
        p = make_problem(rng, TRAIN_NAMES, 1, config.train_max, rng.randint(1, config.max_steps),
                         answer_lines=config.answer_lines, question_layout=config.question_layout)
        if p["question"] not in seen:
            seen.add(p["question"])
            train.append(_row(p))
    test, seen_test = [], set()
    while len(test) < n_test:
        steps = 1 + len(test) % config.max_steps
        held = rng.randrange(steps) if rng.random() < config.held_out_share else None
        lo = config.train_max + 1 if config.test_min is None else config.test_min
        p = make_problem(rng, TEST_NAMES if config.test_names == "held_out" else TRAIN_NAMES, lo, config.test_max,
                         steps, held, config.answer_lines, config.question_layout)
        if p["question"] not in seen and p["question"] not in seen_test:
            seen_test.add(p["question"])
            test.append(_row(p))
    return {"train": train, "test": test}


# what each held-out phrasing leaves in a question or an answer line, with any pronoun and numbers
_HELD_MARKERS = [re.compile(r"\b(?:she|he|She|He) " + re.escape(fill(p.split("{P} ", 1)[1], "he", "ITEM"))
                            .replace(r"\{b\}", r"\d+").replace(r"\{k\}", r"\d+").replace("ITEM", r"\w+")
                            .replace("his", "(?:his|her)").removesuffix(r"\.") + "[.,]")
                 for p in (ADD[-1], SUB[-1], *MUL_HELD)]


def held_out_phrasing(text: str) -> bool:
    """Whether a question or an answer line uses a phrasing the train split holds out."""
    return any(m.search(text) for m in _HELD_MARKERS)


def line_held_out(question: str, line: str) -> bool:
    """Whether the step an answer line tells (the question's sentence with the line's anchor)
    uses a held-out phrasing -- whether or not the line restates it."""
    anchor = line.split(" ", 1)[0]
    if anchor not in ANCHORS:
        return held_out_phrasing(line)
    told = re.search(rf"\b{anchor} [^.]*\.", question)
    return held_out_phrasing(told.group(0) if told else line)
