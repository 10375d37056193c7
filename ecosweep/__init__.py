"""ecosweep: the energy of LLM inference under precision, batch-size and hardware choices."""

__version__ = "0.1.0"
