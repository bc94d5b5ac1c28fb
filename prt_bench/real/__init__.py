"""The paper's real tasks and real pretrained weights, offline.

- ``tasks``: GSM8K and IFEval read from the local data dir for the lm-eval task YAMLs under
  ``tasks/gsm8k_local`` and ``tasks/ifeval_local``, and the English Punkt tables IFEval's
  scoring needs, provided without nltk's run-time download.
Real pretrained weights (SmolLM2-135M-Instruct, Gemma-3-270M) come as GGUF files inside
packages (``requirements/models.lock``), converted by ``prt_bench.lm.gguf``; the experiment on
them is the suite ``suites/real.yaml``.
"""
