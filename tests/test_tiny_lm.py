from transformers import AutoModelForCausalLM, AutoTokenizer


def test_byte_tokenizer_round_trips_any_text(byte_tokenizer):
    text = "Ünïcode, numbers 1234 and #### 42\n"
    ids = byte_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert byte_tokenizer.decode(ids) == text


def test_tiny_models_reload_from_disk_with_a_shared_vocabulary(tiny_llama, tiny_qwen2):
    tok_a, tok_b = AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_qwen2)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    llama, qwen = AutoModelForCausalLM.from_pretrained(tiny_llama), AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    assert type(llama).__name__ == "LlamaForCausalLM" and type(qwen).__name__ == "Qwen2ForCausalLM"
    assert qwen.config.vocab_size == llama.config.vocab_size + 8


def test_a_qwen2_checkpoint_keeps_the_tokenizer_it_was_saved_with(tmp_path):
    """A Qwen2 base saved with a BPE whose numbers are whole tokens (the mini world's) reads text
    as that tokenizer cuts it -- in training, PRT/EFT and lm-eval's hf model -- not as the class
    AutoTokenizer picks for qwen2 would (one token per digit); and one vocabulary cut two ways
    is refused for per-token combination."""
    from tokenizers import Tokenizer, pre_tokenizers

    from prt_bench.lm.load import PROBE_TEXT, load_tokenizer, saved_tokenizer_dir
    from prt_bench.lm.tiny import build_tiny_lm
    from prt_bench.lm.vocab import tokenizer_difference
    from prt_bench.mini.lm.tokenizer import train_bpe

    tok = train_bpe([f"Nora has {n} marbles, then {n + 1313} more. 3.5 + 12 = 15.5" for n in range(60)] * 5, 400)
    qwen = build_tiny_lm(tmp_path / "qwen", "qwen2", tok, hidden=16, layers=1)
    llama = build_tiny_lm(tmp_path / "llama", "llama", tok, hidden=16, layers=1)
    as_saved = Tokenizer.from_file(str(qwen / "tokenizer.json")).encode(PROBE_TEXT).ids
    assert "Ġ24" in tok.convert_ids_to_tokens(as_saved)  # numbers are whole tokens in this BPE
    loaded = load_tokenizer(qwen)
    assert loaded(PROBE_TEXT)["input_ids"] == as_saved
    assert tokenizer_difference(loaded, load_tokenizer(llama)) == ""
    folder = saved_tokenizer_dir(qwen, tmp_path / "tok")
    if folder is not None:  # AutoTokenizer on the checkpoint cuts otherwise: lm-eval gets this folder
        assert AutoTokenizer.from_pretrained(folder)(PROBE_TEXT)["input_ids"] == as_saved
        assert tokenizer_difference(AutoTokenizer.from_pretrained(qwen), loaded).startswith("they tokenize")
    digits = train_bpe([f"Nora has {n} marbles" for n in range(60)] * 5, 400)
    split = train_bpe([f"Nora has {n} marbles" for n in range(60)] * 5, 400)
    split.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), split.backend_tokenizer.pre_tokenizer])
    assert digits.get_vocab() == split.get_vocab()
    assert "otherwise from token" in tokenizer_difference(digits, split)
