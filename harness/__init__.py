"""harness: what training does, and how much the loss and the optimizer matter, measured."""

__version__ = "0.1.0"
