"""What a served index holds goes with it: a long-running process (chat, `mediarec serve`) that
opens indexes one after another does not keep every one alive."""

from __future__ import annotations

import gc
import weakref


def test_a_served_index_is_freed_with_its_recommender(demo_home):
    from mediarec.app.compose import from_dataset

    rec = from_dataset("demo", llm="none")
    user = next(iter(rec.catalog.by_user))
    result = rec.recommend(user=user, k=5)
    assert result.items and all(it.reason for it in result.items)  # the explanations' tables were built
    assert "explain_tools" in rec.index.derived  # and kept by the index snapshot, built once
    tools = rec.index.derived["explain_tools"]
    assert rec.recommend(user=user, k=5).items and rec.index.derived["explain_tools"] is tools

    index = weakref.ref(rec.index)
    catalog = weakref.ref(rec.catalog)
    del rec, result, tools
    gc.collect()
    assert index() is None and catalog() is None  # nothing module-level keeps them
