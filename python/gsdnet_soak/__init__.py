"""Parts of the soak test of the daemon; `scripts/soak.py` is the entry point and says what it checks."""
