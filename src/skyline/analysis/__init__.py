"""The analysis pipeline: one judgement everywhere.

The live analyzer, crucible (command and web page), `skyline analyze --once` and `skyline
bench nab` all judge through this package, with parameters derived from Settings in one place
(params.py). See docs/analyzer.md, "The analysis pipeline".
"""
