"""The LLM ranking stage: prompts, parsing the model's answer, fusing it with retrieval, profiles."""
