"""The package version: the single source, which hatch reads too (``[tool.hatch.version]``).

A literal rather than ``importlib.metadata.version("wsiarray")``: importing
``importlib.metadata`` costs ~50 ms that ``import wsiarray`` should not pay.
"""

__version__ = "0.1.0"
