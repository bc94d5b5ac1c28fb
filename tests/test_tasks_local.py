"""The local-file GSM8K / IFEval tasks score exactly as lm-eval's own `gsm8k` and `ifeval`.

Both sides run through `lm_eval.simple_evaluate` in one call, on the same local data (the
bundled task YAMLs are loaded as they ship, with only their hub dataset swapped for the local
files), with a fake model whose generations are a fixed function of the question or prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from prt_bench.data import require_data_file
from prt_bench.io import REPO_ROOT

TASKS_DIR = REPO_ROOT / "tasks"
N_DOCS = 30  # lm-eval takes one limit for all tasks of a run
N_GSM8K = N_IFEVAL = N_DOCS


def _pick(text: str, n: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % n


def _gsm8k_reply(question: str, gold: str) -> str:
    """Right, right without '####', wrong, or right with thousands separators and a '$'."""
    kind = _pick(question, 4)
    n = int(gold.replace(",", ""))
    return [f" Adding it up gives {n}.\n#### {n}", f" So the answer is {n}.",
            f" It is {n} + 1 = {n + 1}.\n#### {n + 1}", f" That makes ${n:,}.\n#### {n:,}"][kind]


def _ifeval_reply(prompt: str) -> str:
    kind = _pick(prompt, 5)
    return [prompt, prompt.upper(), prompt.lower().replace(",", ""),
            "<<A title>>\n\n*highlighted* part. Another sentence here. P.S. done",
            ""][kind]


class FixedReplies:
    """An lm-eval LM whose generation is a fixed function of the last question in the prompt."""

    def __init__(self, gold: dict[str, str]):
        from lm_eval.api.model import LM

        class _LM(LM):
            def generate_until(lm, requests, disable_tqdm=False):
                out = []
                for r in requests:
                    context = r.args[0]
                    self.requests.append((r.task_name, r.doc_id, context, dict(r.args[1])))
                    question = context.rsplit("Question: ", 1)[-1].removesuffix("\nAnswer:")
                    out.append(_gsm8k_reply(question, gold[question]) if question in gold else _ifeval_reply(context))
                return out

            def loglikelihood(lm, requests, disable_tqdm=False):
                raise NotImplementedError

            def loglikelihood_rolling(lm, requests, disable_tqdm=False):
                raise NotImplementedError

        self.requests: list[tuple] = []
        self.lm = _LM()


class FirstChoice:
    """A stand-in for the `random` module that always takes the first option."""

    @staticmethod
    def choice(options):
        return options[0]

    @staticmethod
    def randint(low, high):
        return low

    @staticmethod
    def sample(population, k):
        return list(population)[:k]


def _bundled_config(name: str, data_files: dict[str, str]) -> dict:
    """lm-eval's own task config as shipped, reading `data_files` instead of the hub."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lm_eval.tasks.__file__).parent / name / f"{name}.yaml")
    cfg.pop("tag", None)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files})
    return cfg


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One lm-eval run of the local tasks and lm-eval's own, from an unrelated working dir."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from prt_bench.real.tasks import ensure_punkt_tab

    os.environ.setdefault("PRT_BENCH_NLTK_DATA", str(tmp_path_factory.mktemp("nltk_data")))
    ensure_punkt_tab()  # before lm-eval's ifeval module is imported, or it tries a download
    import lm_eval.tasks.ifeval.instructions as ifeval_instructions

    test, train = require_data_file("gsm8k/test.jsonl"), require_data_file("gsm8k/train.jsonl")
    gold = {}
    for line in test.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        gold[row["question"]] = row["answer"].rsplit("#### ", 1)[-1].strip()
    model = FixedReplies(gold)
    reference = [
        _bundled_config("gsm8k", {"train": str(train), "test": str(test)}),
        _bundled_config("ifeval", {"train": str(require_data_file("ifeval/input_data.jsonl"))}),
    ]
    old_cwd, pin = Path.cwd(), pytest.MonkeyPatch()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    try:
        # IFEval's checks draw a random value where the data gives an invalid one (one prompt
        # asks for the letter '#'), so two runs agree only when that draw is pinned.
        pin.setattr(ifeval_instructions, "random", FirstChoice())
        pin.setattr(ifeval_instructions.instructions_util, "random", FirstChoice())
        tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        out = lm_eval.simple_evaluate(
            model=model.lm, task_manager=tm,
            tasks=["gsm8k_local", "gsm8k_local_zeroshot", "gsm8k_local_chat", "ifeval_local", *reference],
            limit=N_DOCS,
            log_samples=False,
        )
    finally:
        pin.undo()
        os.chdir(old_cwd)
    by_task: dict[str, list] = {}
    for task, doc_id, context, gen_kwargs in sorted(model.requests, key=lambda r: (r[0], r[1])):
        by_task.setdefault(task, []).append((doc_id, context, gen_kwargs))
    return out["results"], by_task


def _metrics(results: dict, task: str) -> dict:
    return {k: v for k, v in results[task].items() if k not in ("name", "alias")}


def test_gsm8k_local_sends_the_same_prompts_as_lm_evals_gsm8k(evaluated):
    _, requests = evaluated
    assert len(requests["gsm8k_local"]) == N_GSM8K
    assert requests["gsm8k_local"] == requests["gsm8k"]
    assert requests["gsm8k_local"][0][1].count("Question: ") == 6  # 5-shot from train, then the test question


def test_gsm8k_local_scores_the_same_as_lm_evals_gsm8k(evaluated):
    results, _ = evaluated
    ours, theirs = _metrics(results, "gsm8k_local"), _metrics(results, "gsm8k")
    assert ours == theirs
    # The fixed replies tell the two filters apart, so the comparison covers both of them.
    assert 0 < ours["exact_match,strict-match"] < ours["exact_match,flexible-extract"] < 1


def test_ifeval_local_sends_the_same_prompts_as_lm_evals_ifeval(evaluated):
    _, requests = evaluated
    assert len(requests["ifeval_local"]) == N_IFEVAL
    assert requests["ifeval_local"] == requests["ifeval"]


def test_ifeval_local_scores_the_same_as_lm_evals_ifeval(evaluated):
    results, _ = evaluated
    ours, theirs = _metrics(results, "ifeval_local"), _metrics(results, "ifeval")
    assert ours == theirs
    for metric in ("prompt_level_strict_acc,none", "inst_level_strict_acc,none",
                   "prompt_level_loose_acc,none", "inst_level_loose_acc,none"):
        assert 0 < ours[metric] < 1


def test_gsm8k_local_zeroshot_prompt_is_the_bare_question(evaluated):
    _, requests = evaluated
    test = require_data_file("gsm8k/test.jsonl").read_text(encoding="utf-8").splitlines()
    question = json.loads(test[requests["gsm8k_local_zeroshot"][0][0]])["question"]
    assert requests["gsm8k_local_zeroshot"][0][1] == f"Question: {question}\nAnswer:"


def test_gsm8k_local_chat_sends_the_question_alone_as_the_user_turn(evaluated):
    _, requests = evaluated
    test = require_data_file("gsm8k/test.jsonl").read_text(encoding="utf-8").splitlines()
    doc_id, context, gen_kwargs = requests["gsm8k_local_chat"][0]
    assert context == json.loads(test[doc_id])["question"]
    assert "Question:" not in gen_kwargs["until"]


def test_gsm8k_dataset_reads_an_explicit_data_dir(tmp_path):
    from prt_bench.real.tasks import gsm8k_dataset

    (tmp_path / "gsm8k").mkdir()
    for split in ("train", "test"):
        rows = [{"question": f"{split} q{i}?", "answer": f"step\n#### {i}"} for i in range(3)]
        (tmp_path / "gsm8k" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = gsm8k_dataset(data_dir=str(tmp_path), version=3.0, pretrained="ignored")
    assert ds["test"]["question"] == ["test q0?", "test q1?", "test q2?"]
    assert ds["train"].column_names == ["question", "answer"]


def test_gsm8k_dataset_names_the_missing_file(tmp_path):
    from prt_bench.real.tasks import gsm8k_dataset

    with pytest.raises(FileNotFoundError, match="gsm8k/train.jsonl"):
        gsm8k_dataset(data_dir=str(tmp_path))


def test_written_punkt_tables_load_in_nltk_as_the_packaged_model(tmp_path, monkeypatch):
    import nltk
    import punkt
    from nltk.tokenize.punkt import PunktTokenizer

    from prt_bench.real.tasks import write_punkt_tab

    write_punkt_tab(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    tokenizer = PunktTokenizer("english")
    params, packaged = tokenizer._params, punkt.load_model("english")
    assert params.abbrev_types == set(packaged.abbrev_types)
    assert params.collocations == set(packaged.collocations)
    assert params.sent_starters == set(packaged.sent_starters)
    assert params.ortho_context == dict(packaged.ortho_context)
    text = "Dr. Smith met Mr. Jones in Washington on Jan. 5. They talked. It was 3 p.m. and late."
    assert tokenizer.tokenize(text) == [
        "Dr. Smith met Mr. Jones in Washington on Jan. 5.", "They talked.", "It was 3 p.m. and late."]


def test_smollm2_training_pairs_continue_the_zeroshot_prompt(evaluated, tmp_path):
    from prt_bench.real.tasks import write_gsm8k_pairs

    _, requests = evaluated
    rows = [json.loads(line) for line in write_gsm8k_pairs(tmp_path / "pairs.jsonl", 5, seed=1).read_text().splitlines()]
    train = {json.loads(line)["question"]: json.loads(line)["answer"]
             for line in require_data_file("gsm8k/train.jsonl").read_text(encoding="utf-8").splitlines()}
    zeroshot_prompt = requests["gsm8k_local_zeroshot"][0][1]
    assert zeroshot_prompt.startswith("Question: ") and zeroshot_prompt.endswith("\nAnswer:")
    for row in rows:
        question = row["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
        assert row["prompt"] == f"Question: {question}\nAnswer:"
        assert row["response"] == " " + train[question]  # lm-eval's target delimiter, then the full solution
