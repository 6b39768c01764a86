"""LLM backends (local llama.cpp, any OpenAI-compatible server) and the weights they run on."""
