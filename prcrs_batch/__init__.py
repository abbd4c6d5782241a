"""prcrs-batch: nightly PrCRS scoring of severe CRS risk for CAR-T patients."""

__version__ = "0.1.0"
