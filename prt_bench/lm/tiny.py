"""Small language models built on the fly: one shared byte-level tokenizer and tiny
Hugging Face checkpoints of real model classes (Llama, Qwen2, ...).

The mini world and the tests use these; they need no hub.  Every model built with the same
tokenizer shares its vocabulary, as Qwen2 and Qwen2.5 do, so PRT can combine them.
"""

from __future__ import annotations

from pathlib import Path

# "<|endoftext|>" as eos: Qwen2's tokenizer class (which AutoTokenizer picks for qwen2 checkpoints)
# adds it when missing, and then the vocabularies of the two families would differ.
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|endoftext|>", "<|user|>", "<|assistant|>"]
# A minimal chat template: exercised when a recipe is asked to use the tokenizer's template.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}<|endoftext|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def byte_level_tokenizer(chat_template: bool = False):
    """A byte-level tokenizer: 256 byte tokens plus a few specials, no merges.

    Any text round-trips, and token ids mean the same in every model built with it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(family: str, vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                intermediate: int | None = None, max_positions: int = 512, **extra):
    """A transformers config of `family` ("llama", "qwen2", "mistral", ...) at toy size."""
    from transformers import AutoConfig

    return AutoConfig.for_model(
        family,
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate or 4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        **extra,
    )


def build_tiny_lm(out_dir: str | Path, family: str = "llama", tokenizer=None, seed: int = 0,
                  extra_vocab: int = 0, **config_kwargs) -> Path:
    """Save a randomly initialised tiny causal LM (safetensors) with its tokenizer to `out_dir`.

    `extra_vocab` widens the output layer past the tokenizer, like Qwen2-7B's padded head.
    """
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or byte_level_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(family, vocab_size=len(tokenizer) + extra_vocab, pad_token_id=ids("<|pad|>"),
                         bos_token_id=ids("<|bos|>"), eos_token_id=ids("<|endoftext|>"), **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
