"""Datasets, preprocessing and batch loading."""
