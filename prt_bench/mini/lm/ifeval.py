"""mini_ifeval: prompts with verifiable format instructions in IFEval's style, their ideal
responses (the SFT data), and the checker with IFEval's four scores.

Instruction ids and check rules follow IFEval (lm_eval/tasks/ifeval/instructions.py), cut to
what needs no language detector or NLTK data: words are counted with a regex instead of NLTK.
The test split holds out topics and pairs instructions more often than the train split.
"""

from __future__ import annotations

import json
import random
import re

TRAIN_TOPICS = ["the garden", "the market", "the school", "the river", "the library", "the farm",
                "the park", "the kitchen", "the beach", "the train", "the zoo", "the shop"]
TEST_TOPICS = ["the museum", "the harbor", "the forest", "the bakery"]
NAMES = ["Mia", "Tom", "Ava", "Leo", "Zoe", "Max", "Ivy", "Sam"]
ITEMS = ["apples", "books", "coins", "pens", "cards", "shells", "stamps", "cookies"]
KEYWORDS = ["sun", "blue", "happy", "water", "green", "quiet", "music", "bread"]
END_PHRASES = ["That is all", "Thank you", "The end", "See you soon"]
SENTENCES = [
    "{name} goes to {topic} with {n} friends.",
    "At {topic} {name} counts {n} {item}.",
    "{name} likes {topic}, and {name} visits it {n} times a week.",
    "There are {n} {item} at {topic}.",
    "{name} buys {n} {item} near {topic}, then walks home.",
    "{topic} opens at {n} in the morning.",
]


def sentence(rng: random.Random, topic: str) -> str:
    s = rng.choice(SENTENCES).format(name=rng.choice(NAMES), topic=topic, n=rng.randint(2, 30),
                                     item=rng.choice(ITEMS))
    return s[0].upper() + s[1:]


def prose(rng: random.Random, topic: str, k: int) -> str:
    return " ".join(sentence(rng, topic) for _ in range(k))


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


# --- instructions: id -> (description, check) -------------------------------------------------

def _desc(iid: str, kw: dict) -> str:
    return {
        "change_case:english_lowercase": "Your entire response should be in English, and in all lowercase letters.",
        "change_case:english_capital": "Your entire response should be in English, and in all capital letters.",
        "punctuation:no_comma": "In your entire response, refrain from the use of any commas.",
        "startend:quotation": "Wrap your entire response with double quotation marks.",
        "startend:end_checker": f"Finish your response with this exact phrase: {kw.get('end_phrase')}. "
                                "No other words should follow this phrase.",
        "detectable_format:json_format": "Entire output should be wrapped in JSON format.",
        "length_constraints:number_words": f"Answer with {kw.get('relation')} {kw.get('num_words')} words.",
        "keywords:existence": f"Include keywords {', '.join(kw.get('keywords') or [])} in the response.",
    }[iid]


def check_instruction(iid: str, kw: dict, response: str) -> bool:
    """Whether `response` follows instruction `iid` with arguments `kw` (IFEval's strict rule)."""
    if not response.strip():
        return False
    r = response.strip()
    if iid == "change_case:english_lowercase":
        return response == response.lower()
    if iid == "change_case:english_capital":
        return response == response.upper()
    if iid == "punctuation:no_comma":
        return "," not in response
    if iid == "startend:quotation":
        return len(r) > 1 and r[0] == '"' and r[-1] == '"'
    if iid == "startend:end_checker":
        return r.lower().endswith(kw["end_phrase"].strip().lower())
    if iid == "detectable_format:json_format":
        body = r.removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
        body = body.removeprefix("```").removesuffix("```").strip()
        try:
            json.loads(body)
        except ValueError:
            return False
        return True
    if iid == "length_constraints:number_words":
        n = count_words(response)
        return n < kw["num_words"] if kw["relation"] == "less than" else n >= kw["num_words"]
    if iid == "keywords:existence":
        return all(re.search(k, response, flags=re.IGNORECASE) for k in kw["keywords"])
    raise ValueError(f"unknown instruction id {iid!r}")


def loose_variants(response: str) -> list[str]:
    """IFEval's loose scoring: the response, without its first/last line, without asterisks."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    out = [response, first, last, both]
    return out + [r.replace("*", "") for r in out]


def check(doc: dict, response: str) -> dict:
    """Prompt- and instruction-level strict and loose results for one response."""
    strict = [check_instruction(i, kw, response) for i, kw in zip(doc["instruction_id_list"], doc["kwargs"])]
    variants = loose_variants(response)
    loose = [any(check_instruction(i, kw, v) for v in variants)
             for i, kw in zip(doc["instruction_id_list"], doc["kwargs"])]
    return {"prompt_level_strict_acc": all(strict), "inst_level_strict_acc": strict,
            "prompt_level_loose_acc": all(loose), "inst_level_loose_acc": loose}


# --- generation --------------------------------------------------------------------------------

INSTRUCTIONS = ["change_case:english_lowercase", "change_case:english_capital", "punctuation:no_comma",
                "startend:quotation", "startend:end_checker", "detectable_format:json_format",
                "length_constraints:number_words", "keywords:existence"]
# Pairs that cannot both hold, or whose ideal response would be ambiguous.
CONFLICTS = [{"change_case:english_lowercase", "change_case:english_capital"},
             {"detectable_format:json_format", "startend:quotation"},
             {"detectable_format:json_format", "startend:end_checker"},
             {"startend:quotation", "startend:end_checker"},
             {"detectable_format:json_format", "length_constraints:number_words"}]


def _kwargs(rng: random.Random, iid: str) -> dict:
    if iid == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if iid == "length_constraints:number_words":
        return {"relation": rng.choice(["at least", "less than"]), "num_words": rng.choice([10, 15, 20, 25, 30])}
    if iid == "keywords:existence":
        return {"keywords": rng.sample(KEYWORDS, 2)}
    return {}


def ideal_response(rng: random.Random, topic: str, ids: list[str], kwargs: list[dict]) -> str:
    """A response that follows every instruction (the SFT target)."""
    kw = dict(zip(ids, kwargs))
    sentences = [sentence(rng, topic) for _ in range(rng.randint(1, 3))]
    if "keywords:existence" in kw:
        a, b = kw["keywords:existence"]["keywords"]
        sentences.append(f"It is {a} and {b} there.")
    if "length_constraints:number_words" in kw:
        n, rel = kw["length_constraints:number_words"]["num_words"], kw["length_constraints:number_words"]["relation"]
        if "startend:end_checker" in kw:  # the end phrase counts too
            n -= count_words(kw["startend:end_checker"]["end_phrase"])
        if rel == "at least":
            while count_words(" ".join(sentences)) < n:
                sentences.append(sentence(rng, topic))
        else:
            while len(sentences) > 1 and count_words(" ".join(sentences)) >= n:
                sentences.pop(0)
            if count_words(" ".join(sentences)) >= n:
                sentences = [" ".join(sentences[0].split()[: n - 1]).rstrip(",") + "."]
    text = " ".join(sentences)
    if "punctuation:no_comma" in kw:
        text = text.replace(",", "")
    if "startend:end_checker" in kw:
        text = f"{text} {kw['startend:end_checker']['end_phrase']}"
    if "startend:quotation" in kw:
        text = f'"{text}"'
    if "detectable_format:json_format" in kw:
        text = json.dumps({"text": text})
    if "change_case:english_lowercase" in kw:
        text = text.lower()
    if "change_case:english_capital" in kw:
        text = text.upper()
    return text


def make_prompt(rng: random.Random, topics: list[str], n_instructions: int, key: int) -> dict:
    ids: list[str] = []
    while len(ids) < n_instructions:
        iid = rng.choice(INSTRUCTIONS)
        if iid not in ids and not any({iid, j} in CONFLICTS for j in ids):
            ids.append(iid)
    kwargs = [_kwargs(rng, i) for i in ids]
    topic = rng.choice(topics)
    prompt = f"Write a short note about {topic}. " + " ".join(_desc(i, k) for i, k in zip(ids, kwargs))
    response = ideal_response(rng, topic, ids, kwargs)
    return {"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs, "response": response}


def generate(n_train: int, n_test: int, seed: int = 0) -> dict[str, list[dict]]:
    """Train rows (prompt, response, instructions) and test rows on held-out topics."""
    rng = random.Random(seed + 7919)
    train = [make_prompt(rng, TRAIN_TOPICS, 1 if rng.random() < 0.7 else 2, i) for i in range(n_train)]
    test = [make_prompt(rng, TEST_TOPICS, 1 + i % 2, i) for i in range(n_test)]
    for row in test:
        row["response"] = ""  # a test row carries no answer
    return {"train": train, "test": test}
