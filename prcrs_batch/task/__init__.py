"""What is predicted, defined once: the panel, the target, units, metrics, row keys.

The bottom layer: every other stage takes the analytes, factor sets, horizons, the severe
grade and the early-warning label from here, so training, the night, `score` and monitoring
predict and judge the same thing.
"""
