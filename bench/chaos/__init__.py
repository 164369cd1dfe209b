"""The chaos soak: ``python -m bench.chaos`` (see ``__main__`` and docs/reliability.md)."""
