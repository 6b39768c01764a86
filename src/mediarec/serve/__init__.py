"""``mediarec serve``: the recommender as an HTTP service (FastAPI + uvicorn, the ``[serve]`` extra).

It sits above the composition root (:mod:`mediarec.app` builds the served Recommender) and below
the CLI, which imports it lazily. ``keys`` holds the API keys (hashed), ``events`` the durable
feedback log, ``gate`` the bounded LLM queue and the per-key rate limits, ``api`` the application.
"""
