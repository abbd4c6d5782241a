"""Training and validation, offline: datasets, CV, training, baselines, choices, evaluation.

Datasets are built through the nightly path (warehouse -> features), so what is validated
is what runs.
"""
