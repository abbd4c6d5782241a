"""The job watching itself: performance as outcomes arrive, drift, the night's watch, run metrics."""
