"""Which language models may be combined token by token.

PRT and EFT add per-token log-probabilities, so token id ``i`` must mean the same string in
every model: the tokenizers must map the same vocabulary to the same ids, agree on the special
tokens and cut the same text into the same tokens.  Models that share a tokenizer may still differ in output width (Qwen2-0.5B
has 151936 logits, Qwen2-7B 152064); they are combined on the common prefix
(``prt_bench.prt.shared_vocab``), which must cover every id the tokenizer can produce.
"""

from __future__ import annotations

from typing import Any, Sequence

# unk and pad are left out: tokenizer classes fill them in differently for one vocabulary
# (Qwen2's class sets unk to its eos), and neither changes what an id means when scoring.
_SPECIAL_IDS = ("bos_token_id", "eos_token_id")


def _first_difference(vocab_a: dict[str, int], vocab_b: dict[str, int], shown: int = 3) -> str:
    """The vocabulary sizes when they differ, and the first ids whose tokens differ."""
    by_id_a = {idx: token for token, idx in vocab_a.items()}
    by_id_b = {idx: token for token, idx in vocab_b.items()}
    differing = [i for i in sorted(set(by_id_a) | set(by_id_b)) if by_id_a.get(i) != by_id_b.get(i)]
    if len(vocab_a) == len(vocab_b) and not differing:
        return ""
    parts = [f"vocabulary sizes {len(vocab_a)} vs {len(vocab_b)}"] if len(vocab_a) != len(vocab_b) else []
    if differing:
        pairs = ", ".join(f"id {i}: {by_id_a.get(i)!r} vs {by_id_b.get(i)!r}" for i in differing[:shown])
        parts.append(f"{len(differing)} ids differ, the first {pairs}" if len(differing) > shown
                     else f"{len(differing)} ids differ: {pairs}")
    return "; ".join(parts)


def _specials(tok: Any) -> list[str]:
    named = {tok.bos_token, tok.eos_token} - {None}
    return sorted((set(tok.all_special_tokens) - {tok.unk_token}) | named)


def tokenizer_difference(tok_a: Any, tok_b: Any) -> str:
    """Why two tokenizers are not interchangeable for per-token combination ("" if they are)."""
    diff = _first_difference(tok_a.get_vocab(), tok_b.get_vocab())
    if diff:
        return diff
    for attr in _SPECIAL_IDS:
        a, b = getattr(tok_a, attr, None), getattr(tok_b, attr, None)
        if a != b:
            return f"{attr} differs ({a} vs {b})"
    specials_a, specials_b = _specials(tok_a), _specials(tok_b)
    if specials_a != specials_b:
        return f"special tokens differ ({specials_a} vs {specials_b})"
    from prt_bench.lm.load import PROBE_TEXT

    ids_a, ids_b = tok_a(PROBE_TEXT)["input_ids"], tok_b(PROBE_TEXT)["input_ids"]
    if ids_a != ids_b:  # one vocabulary, cut into tokens otherwise (a pre-tokenizer, a normalizer)
        k = next((i for i, (a, b) in enumerate(zip(ids_a, ids_b)) if a != b), min(len(ids_a), len(ids_b)))
        return (f"they tokenize {PROBE_TEXT!r} otherwise from token {k} on: "
                f"{tok_a.convert_ids_to_tokens(ids_a[k:k + 3])} vs {tok_b.convert_ids_to_tokens(ids_b[k:k + 3])}")
    return ""


def check_same_tokenizer(tok_a: Any, tok_b: Any, name_a: str, name_b: str) -> None:
    """Raise ValueError naming both models unless their tokenizers are the same mapping."""
    diff = tokenizer_difference(tok_a, tok_b)
    if diff:
        raise ValueError(
            f"tokenizers of {name_a} and {name_b} differ: {diff}. PRT and EFT combine per-token "
            "log-probabilities, so every model must share one tokenizer."
        )


def check_tokenizers(tokenizers: Sequence[Any], names: Sequence[str]) -> None:
    """All tokenizers against the first one."""
    for tok, name in zip(tokenizers[1:], names[1:]):
        check_same_tokenizer(tokenizers[0], tok, names[0], name)


def output_width(model: Any) -> int:
    return model.get_output_embeddings().weight.shape[0]


def shared_width(models: Sequence[Any], names: Sequence[str], tokenizer: Any) -> int:
    """Width of the common prefix of the output layers; it must cover the tokenizer."""
    widths = [output_width(m) for m in models]
    width = min(widths)
    if width < len(tokenizer):
        detail = ", ".join(f"{n}: {w}" for n, w in zip(names, widths))
        raise ValueError(
            f"output layers ({detail}) do not cover the tokenizer's {len(tokenizer)} tokens, "
            "so the models cannot be combined on a shared vocabulary"
        )
    return width


def cut(logits: Sequence[Any], vocab: int | None) -> list[Any]:
    """The logits of the tokenizer's ids only.  Output layers are often wider than the tokenizer
    (padding rows no token reaches); a softmax over them would still give those rows mass, so
    every combination (PRT, EFT/proxy tuning) is normalised over the real vocabulary -- the same
    as setting the padding rows to -inf."""
    return [t[..., :vocab] if vocab is not None and t.shape[-1] > vocab else t for t in logits]
