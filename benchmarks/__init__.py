"""Benchmarks: wsiarray against its peers and the raw JPEG-decode limit, measured in one run.

Run ``python -m benchmarks --quick`` (small slide, smoke test) or ``python -m benchmarks``
(the 40000 x 30000 slide of DESIGN §6). Each case runs in a fresh process, several times;
medians are reported with peak RSS, as Markdown and JSON under ``benchmarks/results/``.
"""
