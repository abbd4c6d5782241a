"""The job watching itself: performance as outcomes arrive, drift, the night's watch and its
run metrics."""
