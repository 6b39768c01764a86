"""Fine-tuning the local LLM on the catalog's own behaviour (``mediarec train``).

The data path: the split's training histories -> examples (``examples.py``: the next item among
our own retriever's hard negatives, labelled by letters in the scoring prompt) -> a LoRA adapter
trained with torch/peft/transformers on the CPU (``lora.py``) -> a GGUF LoRA that llama.cpp loads
(``export.py``) -> ``--adapter DIR`` at ranking time, checked against its manifest (``adapter.py``).

Only ``adapter.py`` is imported at ranking time; the rest needs the ``[train]`` extra.
"""
