"""The networks and what runs them: PrCRS, fused CPU inference, the model store, calibration.

The model store (models/ + manifest.json) rebuilds each model from its saved config and
verifies every weight file's SHA-256; calibration only applies saved parameters.
"""
