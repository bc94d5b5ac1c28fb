"""The one tokenizer every mini base shares: a small byte-level BPE trained on the mini texts.

Byte-level like prt_bench.lm.tiny.byte_level_tokenizer (same special tokens, any text
round-trips), but with merges learnt from the generated corpus, so a word problem takes about
a third of the tokens it takes byte by byte: pretraining, SFT and decoding all get cheaper.
Numbers are cut as the merges learnt them (` 24` is one token); a class that re-cuts them
while loading (transformers maps qwen2 checkpoints to Qwen2Tokenizer, one token per digit) is
bypassed by `prt_bench.lm.load.load_tokenizer`.
"""

from __future__ import annotations

from prt_bench.lm.tiny import SPECIAL_TOKENS


def train_bpe(texts: list[str], vocab_size: int = 1024):
    """A PreTrainedTokenizerFast trained on `texts` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
