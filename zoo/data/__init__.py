"""Datasets: the specs and data contracts (datasets, a leaf without torch) and loading them as tensors (loading).
Above zoo.core only; the models read their data contract from here."""
