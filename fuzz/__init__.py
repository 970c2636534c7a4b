"""A seeded mutation fuzzer of wsiarray's readers (issue 15, deliverable 2).

``python -m fuzz --help``; the modules: :mod:`fuzz.corpus` (input slides),
:mod:`fuzz.mutate` (one mutator per mutation kind), :mod:`fuzz.run` (children with time and
memory limits, classification, the silent-pixel check), :mod:`fuzz.report`, :mod:`fuzz.cli`.
"""
