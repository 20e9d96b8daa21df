"""Parts of the soak test of the daemon; `python/gsdnet_soak/__main__.py` is the entry point and says what it checks."""
