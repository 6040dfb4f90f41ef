"""Run directories on disk: their layout, the runs table, curves, and output paths."""
