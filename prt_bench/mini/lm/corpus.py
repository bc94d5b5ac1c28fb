"""The pretraining corpus of the mini bases: arithmetic facts and number-bearing prose.

This is the bases' "knowledge".  A corpus version fixes the number range its arithmetic
covers, whether it uses the phrasings that mini_gsm's test split holds out, and its size;
v2 (newer, larger) covers more than v1, so a base pretrained on it knows more of what the
test needs.  Nothing here uses mini_gsm's format (a story asked after `Question:`, answered in
lines after `Answer:`, closed by `#### N`): that is what SFT and PRT teach.  A corpus may use the
frame's words elsewhere (`asked_share`, `quiz_share`), as any real corpus does.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from prt_bench.mini.lm import gsm, ifeval


@dataclass(frozen=True)
class CorpusConfig:
    max_number: int = 30          # facts and stories use numbers in [0, max_number]
    held_out_phrasings: bool = False  # whether stories also use the phrasings mini_gsm's test holds out
    n_fact_docs: int = 2000       # documents of 8 arithmetic facts
    n_story_docs: int = 2000      # short stories with inline calculations
    n_prose_docs: int = 300       # topic notes (the mini_ifeval register)
    seed: int = 0
    # Share of stories that open with a sentence of topic prose: where every story starts with
    # its name, "copy the document's first word" passes for copying from the story, and a base
    # that learnt only that cannot copy a name from a task's prompt (docs/mini-lm.md).
    preamble_share: float = 0.0
    # how the counted-through half of a story tells each step: as mini_gsm's `answer_lines`
    counted_lines: str = "restate"
    # "spaced": the counted-through half runs on in one paragraph; "lines": each of its steps on a
    # line of its own, as mini_gsm's answers are laid out (the story as told: `told_layout`)
    counted_layout: str = "spaced"
    # "spaced": the story is told in one paragraph; "lines": each of its sentences on a line of its
    # own, as mini_gsm's questions are in ``question_layout: lines``
    told_layout: str = "spaced"
    # Share of stories that ask their question ("How many apples does Mia have now?") before
    # they are counted through, and share of fact documents written as questions and answers
    # ("Question: 3 + 4 = ?" / "Answer: 3 + 4 = 7").  At 0 the corpus never uses the words of
    # mini_gsm's prompt frame, and a base reads a task prompt through embeddings pretraining
    # never touched (docs/mini-lm-p0.md, "The words of the prompt").
    asked_share: float = 0.0
    quiz_share: float = 0.0
    # Share of stories counted through in the "restate" way (each step's words, then its
    # calculation) whatever `counted_lines` says: there the step's number comes a plain copy of the
    # story's sentence away, an easier case of the look-up the "result" lines ask for
    # (docs/mini-lm-p0.md, "Both ways of counting").
    restate_share: float = 0.0
    # Lists of the world's words, each written twice (`drill`): the second copy is predicted by
    # nothing but the first, so pretraining asks for copying from the context as such, not only
    # inside the stories (docs/mini-lm-p0.md, "Copy drills").
    n_copy_docs: int = 0

    def __post_init__(self) -> None:
        gsm.check_answer_lines(self.counted_lines)
        for field in ("counted_layout", "told_layout"):
            if getattr(self, field) not in ("spaced", "lines"):
                raise ValueError(f"{field} must be 'spaced' or 'lines', got {getattr(self, field)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def fact(rng: random.Random, hi: int) -> str:
    op = rng.random()
    if op < 0.45:
        a = rng.randint(0, hi)
        b = rng.randint(0, hi - a)
        return f"{a} + {b} = {a + b}"
    if op < 0.9:
        a = rng.randint(0, hi)
        b = rng.randint(0, a)
        return f"{a} - {b} = {a - b}"
    k = rng.choice([2, 3])
    a = rng.randint(0, hi // k)
    return f"{a} * {k} = {a * k}"


def quiz(rng: random.Random, hi: int) -> str:
    """A fact asked and answered: the question-and-answer frame on the corpus's own arithmetic."""
    line = fact(rng, hi)
    return f"Question: {line.rsplit(' = ', 1)[0]} = ?\nAnswer: {line}"


def story(rng: random.Random, hi: int, held_out: bool, preamble_share: float = 0.0,
          counted_lines: str = "restate", counted_layout: str = "spaced", asked_share: float = 0.0,
          restate_share: float = 0.0, told_layout: str = "spaced") -> str:
    """A story, then the same story counted through step by step: the reasoning mini_gsm asks
    for, in prose (one paragraph, no `####`); a `preamble_share` of them after a prose sentence,
    a `restate_share` of them counted through in the "restate" way."""
    if restate_share and rng.random() < restate_share:
        counted_lines = "restate"
    name = rng.choice(gsm.TRAIN_NAMES + gsm.TEST_NAMES)
    item = rng.choice(gsm.ITEMS)
    pron = gsm.PRONOUN[name]
    value = rng.randint(1, hi)
    told = [f"{name} has {value} {item}."]
    counted = list(told)
    for k in range(rng.randint(1, len(gsm.ANCHORS))):
        step = gsm._step(rng, value, hi, held_out and rng.random() < 0.5)
        if step is None:
            break
        sentence, calc, value = step
        sentence = gsm.anchored(k, sentence, counted_lines)
        told.append(sentence)
        counted.append(gsm.step_line(sentence, calc, counted_lines))
    sep = "\n" if counted_layout == "lines" else " "
    if asked_share and rng.random() < asked_share:
        told.append(f"How many {item} does {name} have now?")
    text = ("\n" if told_layout == "lines" else " ").join(told) + " Let us count." + \
        "".join(sep + line for line in counted) + f"{sep}In the end {name} has {value} {item}."
    if preamble_share and rng.random() < preamble_share:
        text = ifeval.sentence(rng, rng.choice(ifeval.TRAIN_TOPICS + ifeval.TEST_TOPICS)) + " " + text
    return gsm.fill(text, pron, item)


def drill(rng: random.Random, hi: int) -> str:
    """A list of 4 to 12 different words of the world (names, items, anchors, numbers up to
    `hi`), then the same list again: "List: Mia 14 First coins.\nThe list again: Mia 14 First coins." """
    pool = gsm.TRAIN_NAMES + gsm.TEST_NAMES + gsm.ITEMS + gsm.ANCHORS + [str(n) for n in range(hi + 1)]
    words = " ".join(rng.sample(pool, rng.randint(4, 12)))
    return f"List: {words}.\nThe list again: {words}."


def generate(config: CorpusConfig) -> list[str]:
    """The corpus as a list of documents, shuffled; same config, same documents."""
    rng = random.Random(config.seed)
    docs = ["\n".join(quiz(rng, config.max_number) if config.quiz_share and rng.random() < config.quiz_share
                      else fact(rng, config.max_number) for _ in range(8))
            for _ in range(config.n_fact_docs)]
    docs += [story(rng, config.max_number, config.held_out_phrasings, config.preamble_share, config.counted_lines,
                   config.counted_layout, config.asked_share, config.restate_share, config.told_layout)
             for _ in range(config.n_story_docs)]
    topics = ifeval.TRAIN_TOPICS + ifeval.TEST_TOPICS
    docs += [ifeval.prose(rng, rng.choice(topics), rng.randint(2, 4)) for _ in range(config.n_prose_docs)]
    docs += [drill(rng, config.max_number) for _ in range(config.n_copy_docs)]
    rng.shuffle(docs)
    return docs
