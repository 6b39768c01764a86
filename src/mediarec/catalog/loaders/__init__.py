"""One module per source format; each returns a validated :class:`~mediarec.catalog.Catalog`."""
