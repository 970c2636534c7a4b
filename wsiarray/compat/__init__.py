"""Compatibility layers for code written against other whole-slide libraries.

Import the submodule you need (``wsiarray.compat.large_image``); this package imports
nothing by itself, so ``import wsiarray`` never pulls in another library.
"""
