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
