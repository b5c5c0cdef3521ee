"""Pieces shared by every stage: run-folder layout, atomic writes, the CLI error boundary."""
