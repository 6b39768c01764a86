"""The index: text embeddings and collaborative vectors in ChromaDB, and the retriever over them.

Second stop of the data path: a catalog becomes vectors (``store``), a history becomes scored
candidates (``retriever``).
"""
