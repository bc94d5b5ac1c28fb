"""The lm-eval models `prt` and `eft`: exact scores, KV-cached decoding, vocabularies, lm-eval end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import prt_bench  # noqa: F401  (registers `prt` and `eft` with lm-eval)
from prt_bench import prt
from prt_bench.lm import lm_eval_models
from prt_bench.lm.lm_eval_models import EFTLM, PRTLM, generate


@pytest.fixture(scope="module")
def prt_lm(tiny_llama, tiny_llama_b):
    return PRTLM(base=str(tiny_llama), reward=str(tiny_llama_b), batch_size=4)


def instance(kind: str, args: tuple, idx: int = 0):
    from lm_eval.api.instance import Instance

    return Instance(kind, {}, args, idx)


def naive_prt_greedy(base, reward, prompt: list[int], steps: int) -> list[int]:
    """Reference decoding: the full prefix through both models at every step, one prompt at a time."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.tensor([ids])
            logp = prt.prt_logprobs(base(input_ids=x).logits[:, -1], reward(input_ids=x).logits[:, -1])
            ids.append(int(logp.argmax(-1)))
    return ids[len(prompt):]


def test_prt_greedy_with_kv_caches_equals_full_prefix_recompute(prt_lm):
    tok = prt_lm.tokenizer
    prompts = [tok.encode(s) for s in ("Q: 12+30=", "Hi", "A much longer prompt, to pad the others:")]
    cached = generate(prt_lm.models, prt_lm.combine, prompts, max_new_tokens=10, pad_id=prt_lm.pad_id, eos_id=None)
    base, reward = prt_lm.models
    assert cached == [naive_prt_greedy(base, reward, p, 10) for p in prompts]


def test_decoding_feeds_every_model_one_new_token_per_step(tiny_llama, tiny_llama_b, byte_tokenizer):
    lm = EFTLM(base=str(tiny_llama), ft=str(tiny_llama_b), pt=str(tiny_llama))
    seen: list[list[int]] = [[] for _ in lm.models]
    for i, m in enumerate(lm.models):
        m.register_forward_pre_hook(lambda mod, a, kw, i=i: seen[i].append(kw["input_ids"].shape[1]), with_kwargs=True)
    prompts = [byte_tokenizer.encode("Q: 1+2="), byte_tokenizer.encode("longer prompt here")]
    generate(lm.models, lm.combine, prompts, max_new_tokens=6, pad_id=lm.pad_id, eos_id=None)
    for lengths in seen:
        assert lengths == [len(prompts[1])] + [1] * 5


def test_the_kv_cache_goes_by_the_keyword_the_installed_transformers_keeps(tiny_llama):
    import inspect

    from prt_bench.lm.lm_eval_models import cache_keyword
    from prt_bench.lm.load import load_causal_lm

    model = load_causal_lm(str(tiny_llama))
    keyword = cache_keyword(model)
    assert keyword in inspect.signature(model.forward).parameters  # never a deprecated alias

    class Renamed:  # transformers >= 5.24: `cache`, with `past_key_values` a deprecated alias until 5.40
        def forward(self, input_ids=None, cache=None, use_cache=None):
            pass

    assert cache_keyword(Renamed()) == "cache"


def test_prt_loglikelihood_equals_prt_logprobs_by_hand(prt_lm):
    tok = prt_lm.tokenizer
    context, continuation = "Q: 2+2=", " 4"
    (score, greedy), (score_b, _) = prt_lm.loglikelihood([instance("loglikelihood", (context, continuation)),
                                                          instance("loglikelihood", ("Other context", " x"), 1)])
    ctx, cont = tok.encode(context), tok.encode(continuation, add_special_tokens=False)
    x = torch.tensor([ctx + cont])
    base, reward = prt_lm.models
    with torch.no_grad():
        logp = prt.prt_logprobs(base(input_ids=x).logits, reward(input_ids=x).logits)[0]
    by_hand = sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
    assert score == pytest.approx(by_hand, abs=1e-4)
    assert greedy == all(int(logp[len(ctx) - 1 + j].argmax()) == t for j, t in enumerate(cont))


def test_reward_arithmetic_of_a_reward_with_itself_at_half_weight_equals_that_reward(prt_lm, tiny_llama, tiny_llama_b):
    doubled = PRTLM(base=str(tiny_llama), reward=f"{tiny_llama_b};{tiny_llama_b}", reward_weights="0.5;0.5")
    weighted = PRTLM(base=str(tiny_llama), reward=str(tiny_llama_b), reward_weights=1.0)
    requests = [instance("loglikelihood", ("Q: 3+4=", " 7"))]
    expected = prt_lm.loglikelihood(requests)[0][0]
    assert doubled.loglikelihood(requests)[0][0] == pytest.approx(expected, abs=1e-5)
    assert weighted.loglikelihood(requests)[0][0] == pytest.approx(expected, abs=1e-6)


def test_reward_weights_must_match_the_rewards(tiny_llama, tiny_llama_b):
    with pytest.raises(ValueError, match="reward_weights"):
        PRTLM(base=str(tiny_llama), reward=f"{tiny_llama_b};{tiny_llama_b}")


def test_misspelt_model_args_are_refused(tiny_llama, tiny_llama_b):
    with pytest.raises(TypeError, match="lamb"):
        PRTLM(base=str(tiny_llama), reward=str(tiny_llama_b), lamb=2.0)


def test_prt_runs_with_a_base_of_the_other_family_and_a_wider_head(tiny_qwen2, tiny_llama):
    lm = PRTLM(base=str(tiny_qwen2), reward=str(tiny_llama))
    assert lm.vocab == len(lm.tokenizer)  # Qwen2's 8 extra logits dropped
    text = lm.generate_until([instance("generate_until", ("Q: 1+1=", {"max_gen_toks": 5, "until": []}))])[0]
    score = lm.loglikelihood([instance("loglikelihood", ("Q: 1+1=", " 2"))])[0][0]
    assert isinstance(text, str) and torch.isfinite(torch.tensor(score))


def test_tokenizer_mismatch_fails_naming_both_models_before_loading_any(tiny_llama, tmp_path, monkeypatch):
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    other_tok = byte_level_tokenizer()
    other_tok.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    other = build_tiny_lm(tmp_path / "other-tokenizer", "llama", other_tok)

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the tokenizers were compared")

    monkeypatch.setattr(lm_eval_models, "load_causal_lm", no_loading)
    with pytest.raises(ValueError, match="tokenizers of base=.*tiny-llama.* and reward=.*other-tokenizer.* differ"):
        PRTLM(base=str(tiny_llama), reward=str(other))


def test_stop_sequences_cut_the_generation(prt_lm):
    request = ("Q: 5+5=", {"max_gen_toks": 12, "until": []})
    full = prt_lm.generate_until([instance("generate_until", request)])[0]
    stop = full[3:5]
    assert stop and stop in full
    cut = prt_lm.generate_until([instance("generate_until", ("Q: 5+5=", {"max_gen_toks": 12, "until": [stop]}))])[0]
    assert cut == full.split(stop)[0]


def test_sampling_with_a_tiny_nucleus_is_greedy(prt_lm):
    greedy = prt_lm.generate_until([instance("generate_until", ("Q: 9+1=", {"max_gen_toks": 8, "until": []}))])
    sampled = prt_lm.generate_until([instance("generate_until", (
        "Q: 9+1=", {"max_gen_toks": 8, "until": [], "do_sample": True, "temperature": 0.7, "top_p": 1e-6}))])
    assert sampled == greedy


def test_gen_kwargs_have_generates_meaning_and_unknown_ones_are_refused(prt_lm):
    from prt_bench.lm.lm_eval_models import decoding

    with pytest.raises(ValueError, match=r"gen_kwargs \['num_beams'\] are not supported"):
        prt_lm.generate_until([instance("generate_until", ("Q: 1+1=", {"max_gen_toks": 2, "num_beams": 4}))])
    assert decoding({"do_sample": False, "temperature": 0.0}) == (False, [])
    sample, procs = decoding({"do_sample": True})  # generate()'s meaning: sampling at temperature 1
    assert sample and len(procs) == 0
    with pytest.raises(ValueError, match="temperature > 0"):
        decoding({"do_sample": True, "temperature": 0})
    assert decoding({"temperature": 0.5})[0], "a temperature above 0 alone samples, as lm-eval's tasks mean it"
    torch.manual_seed(0)
    draws = {prt_lm.generate_until([instance("generate_until", ("Q: 9+1=", {"max_gen_toks": 3, "until": [],
                                                                            "do_sample": True}))])[0]
             for _ in range(8)}
    assert len(draws) > 1, "do_sample=True without a temperature samples (it decoded greedily before)"


def test_repetition_penalty_acts_on_the_combined_distribution(prt_lm):
    prompt = prt_lm.tok_encode("Q: 7+7=")
    plain = generate(prt_lm.models, prt_lm.combine, [prompt], max_new_tokens=12, pad_id=prt_lm.pad_id, eos_id=None)[0]
    from prt_bench.lm.lm_eval_models import decoding

    _, procs = decoding({"repetition_penalty": 1e9})
    penalised = generate(prt_lm.models, prt_lm.combine, [prompt], max_new_tokens=12, pad_id=prt_lm.pad_id,
                         eos_id=None, processors=procs)[0]
    assert len(set(plain)) < len(plain) or set(plain) & set(prompt), "the tiny model repeats itself unpenalised"
    assert len(set(penalised)) == len(penalised) and not set(penalised) & set(prompt)


# --------------------------------------------------------------------------------- lm-eval end to end

@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A generate_until task (exact match) and a multiple-choice (loglikelihood) task on local JSONL."""
    root = tmp_path_factory.mktemp("tasks")
    rows = [{"prompt": f"Q: {a}+{a}=", "response": f" {2 * a}", "choices": [f" {2 * a}", f" {2 * a + 1}"], "label": 0}
            for a in range(4)]  # even: two processes get two documents each
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = f"""
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        doc_to_text: "{{{{prompt}}}}"
    """
    (root / "tiny_gen.yaml").write_text(textwrap.dedent(f"""
        task: tiny_gen{common}
        output_type: generate_until
        doc_to_target: "{{{{response}}}}"
        generation_kwargs:
          until: ["\\n"]
          max_gen_toks: 4
          do_sample: false
        metric_list:
          - metric: exact_match
    """))
    (root / "tiny_choice.yaml").write_text(textwrap.dedent(f"""
        task: tiny_choice{common}
        output_type: multiple_choice
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: label
        target_delimiter: ""
        metric_list:
          - metric: acc
    """))
    return root


@pytest.mark.parametrize("model", ["prt", "eft"])
def test_simple_evaluate_runs_generate_and_loglikelihood_tasks(model, task_dir, tiny_llama, tiny_llama_b):
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = (f"base={tiny_llama},reward={tiny_llama_b}" if model == "prt"
                  else f"base={tiny_llama_b},ft={tiny_llama_b},pt={tiny_llama}")
    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=["tiny_gen", "tiny_choice"],
                                  task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                                  batch_size=2)
    assert 0.0 <= out["results"]["tiny_gen"]["exact_match,none"] <= 1.0
    assert 0.0 <= out["results"]["tiny_choice"]["acc,none"] <= 1.0


def lm_eval_command(launcher: list[str], model_args: str, task_dir: Path, out: Path, *extra: str):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launcher, "lm-eval", "--model", "prt", "--model_args", model_args, "--tasks", "tiny_gen,tiny_choice",
         "--include_path", str(task_dir), "--output_path", str(out), "--log_samples", *extra],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def written_results(out: Path) -> tuple[Path, dict, dict]:
    """lm-eval's output folder, its results and each task's samples (doc id -> response)."""
    (results,) = out.rglob("results_*.json")
    samples = {}
    for task in ("tiny_gen", "tiny_choice"):
        (path,) = results.parent.glob(f"samples_{task}_*.jsonl")
        samples[task] = {json.loads(line)["doc_id"]: json.loads(line)["resps"] for line in path.read_text().splitlines()}
    return results.parent, json.loads(results.read_text())["results"], samples


# torchrun, accelerate and Ray open ports on this machine: such tests run one at a time under xdist
@pytest.mark.xdist_group("ports")
def test_two_processes_score_each_request_once_and_give_one_processs_results(task_dir, tiny_llama, tiny_llama_b,
                                                                              tmp_path):
    """`accelerate launch --num_processes 2 -m prt_bench lm-eval --model prt ...` (gloo on the
    CPU): each process scores half of the requests, rank 0 writes the metrics and samples one
    process gives, under a folder named by the models (lm-eval's own naming finds no
    `pretrained=` in prt's model_args)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = f"base={tiny_llama},reward={tiny_llama_b}"
    one = lm_eval.simple_evaluate(model="prt", model_args=model_args, tasks=["tiny_gen", "tiny_choice"],
                                  task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                                  log_samples=True)
    accelerate = Path(sys.executable).with_name("accelerate")
    # --multi_gpu: accelerate starts the processes through torchrun (with no GPU, they talk over gloo)
    two = lm_eval_command([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "prt_bench"],
                          model_args, task_dir, tmp_path / "two")
    folder, results, samples = written_results(tmp_path / "two")
    assert folder.name == f"prt__{tiny_llama.name}__{tiny_llama_b.name}"
    for task in ("tiny_gen", "tiny_choice"):
        assert results[task] == json.loads(json.dumps(one["results"][task]))
        assert_same_responses(samples[task], as_text({s["doc_id"]: s["resps"] for s in one["samples"][task]}))
    for rank in (0, 1):  # 4 documents: 2 generations, 2 x 2 choices per process
        assert f"rank {rank} of 2: 2 generate_until requests" in two.stderr
        assert f"rank {rank} of 2: 4 loglikelihood requests" in two.stderr


def as_text(x):
    """Responses as lm-eval's samples files write them (every leaf a string)."""
    if isinstance(x, dict):
        return {k: as_text(v) for k, v in x.items()}
    return [as_text(i) for i in x] if isinstance(x, (list, tuple)) else str(x)


def assert_same_responses(got, want):
    """The same responses, leaf by leaf: generated text and flags exactly, log-likelihoods to float32
    rounding -- each process batches its half of the requests, so the padded shapes, and with them
    the order in which the CPU's kernels sum, differ from one process's batches."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for k in want:
            assert_same_responses(got[k], want[k])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same_responses(g, w)
    else:
        try:
            number = float(want)
        except ValueError:
            assert got == want
        else:
            if want in ("nan", "inf", "-inf"):
                assert got == want
            else:
                assert float(got) == pytest.approx(number, rel=1e-5, abs=1e-5)


def test_model_name_for_lm_evals_output_folder():
    from prt_bench.lm.cli import named_model_args

    argv = ["--model", "eft", "--model_args", "base=a/b-7B,ft=runs/ft-x/,pt=a/b-0.5B", "--tasks", "t"]
    assert named_model_args(argv)[3] == "base=a/b-7B,ft=runs/ft-x/,pt=a/b-0.5B,model=eft__b-7B__ft-x"
    merged = named_model_args(["--model=prt", "--model_args=base=B,reward=r1;r2,reward_weights=1;1"])
    assert merged[1] == "--model_args=base=B,reward=r1;r2,reward_weights=1;1,model=prt__B__r1__r2"
    for unchanged in (["--model", "hf", "--model_args", "pretrained=x"],
                      ["--model", "prt", "--model_args", "base=B,reward=R,model=mine"]):
        assert named_model_args(unchanged) == unchanged


def test_batch_size_auto_takes_the_largest_size_that_fits_and_says_which(tiny_llama, tiny_llama_b, caplog,
                                                                         monkeypatch):
    from prt_bench.lm.lm_eval_models import out_of_memory, probe_batch_size

    assert probe_batch_size(lambda n: n <= 20, 64) == 16
    assert probe_batch_size(lambda n: False, 64) == 1
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"))
    assert not out_of_memory(RuntimeError("shape mismatch"))
    with caplog.at_level("WARNING", logger="prt_bench"):
        lm = PRTLM(base=str(tiny_llama), reward=str(tiny_llama_b), batch_size="auto", max_batch_size=8)
    assert lm.batch_size == 8 and "batch_size=auto: 8" in caplog.text

    real = torch.nn.Module.__call__

    def small_memory(module, *args, **kwargs):  # as if a batch of more than 2 rows ran out of memory
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[0] > 2 and ids.shape[1] == lm.max_length:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", small_memory)
    assert lm.detect_batch_size(64) == 2
    with pytest.raises(RuntimeError, match="shape"):  # any other error is not "smaller"
        monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape")))
        lm.detect_batch_size(4)


def test_roles_device_maps_and_differing_chat_templates(tiny_llama, tiny_llama_b, tmp_path, caplog):
    import shutil

    chatty = tmp_path / "chatty"
    shutil.copytree(tiny_llama_b, chatty)
    config = json.loads((chatty / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (chatty / "tokenizer_config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING", logger="prt_bench"):
        lm = PRTLM(base=str(tiny_llama), reward=str(chatty), reward_device_map="cpu", batch_size=2)
    assert "chat templates of base, reward differ" in caplog.text
    assert lm.get_model_info()["prt_bench_models"]["reward"]["device_map"] == "cpu"
    assert "device_map" not in lm.get_model_info()["prt_bench_models"]["base"]
    with pytest.raises(TypeError, match="ft_device_map"):
        PRTLM(base=str(tiny_llama), reward=str(tiny_llama_b), ft_device_map="cpu")


def test_the_models_are_lm_eval_entry_points():
    """lm-eval's plugin group (read by its registry after 0.4.13) names the two registered classes."""
    import importlib.metadata as md

    found = {ep.name: ep.load() for ep in md.entry_points(group="lm_eval.models")}
    assert found == {"prt": PRTLM, "eft": EFTLM}


def test_padded_heads_are_combined_over_the_tokenizers_ids_only(tiny_qwen2):
    """Every head 8 rows wider than the tokenizer: PRT and EFT are normalised over the tokenizer's
    ids (the padding rows at -inf), not over the head."""
    prt_lm = PRTLM(base=str(tiny_qwen2), reward=str(tiny_qwen2))
    eft_lm = EFTLM(base=str(tiny_qwen2), ft=str(tiny_qwen2), pt=str(tiny_qwen2))
    n = len(prt_lm.tokenizer)
    context, continuation = "Q: 5+2=", " 7"
    ctx = prt_lm.tokenizer.encode(context)
    cont = prt_lm.tokenizer.encode(continuation, add_special_tokens=False)
    x = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = prt_lm.models[0](input_ids=x).logits[0]
    assert logits.shape[-1] == n + 8

    def summed(logp):
        return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))

    for lm, rule in ((prt_lm, lambda z: prt.prt_logprobs(z, z)), (eft_lm, lambda z: prt.eft_logprobs(z, z, z))):
        score = lm.loglikelihood([instance("loglikelihood", (context, continuation))])[0][0]
        assert score == pytest.approx(summed(rule(logits[..., :n])), abs=1e-5)
        assert abs(summed(rule(logits)) - score) > 1e-3  # over the whole head the padding rows held mass


def test_eft_at_a_strength_scales_the_implicit_reward_of_its_one_ft_model(tiny_llama, tiny_llama_b):
    """``ft_weights=β`` with one FT model (the suite's EFT cells of the λ sweep, β = λ_train / λ):
    log π_base + β (log π_ft − log π_pt), renormalised; β = 1 is plain EFT."""
    import torch.nn.functional as F

    from prt_bench.lm.lm_eval_models import EFTLM

    ids = torch.tensor([[1, 5, 9, 2, 7]])
    mask = torch.ones_like(ids)
    plain = EFTLM(base=tiny_llama_b, ft=tiny_llama_b, pt=tiny_llama, batch_size=1, device="cpu")
    strong = EFTLM(base=tiny_llama_b, ft=tiny_llama_b, pt=tiny_llama, ft_weights="2.0", batch_size=1, device="cpu")
    with torch.no_grad():
        base, pt = (F.log_softmax(m(input_ids=ids).logits.float(), -1) for m in (plain.models[0], plain.models[2]))
        got_plain, got_strong = plain.combined_logprobs(ids, mask), strong.combined_logprobs(ids, mask)
    torch.testing.assert_close(got_plain, F.log_softmax(base + (base - pt), -1))
    torch.testing.assert_close(got_strong, F.log_softmax(base + 2.0 * (base - pt), -1))
    assert not torch.allclose(got_plain, got_strong)
