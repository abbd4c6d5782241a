"""A night's decisions from its features: scoring, alerts, alert states, explanations.

Pure of the results database: `compute.score_night` runs clean -> features -> score ->
alerts -> explain for the nightly job and for `score` alike.
"""
