"""SNAB: replaying labelled corpora (NAB) through the analyzer's algorithms and scoring the
outcome with NAB's rules. Pure logic: the CLI (`skyline bench nab`) reads and writes files.

    corpus     NAB files as data: windows, data rows, result rows and the result layout
    scorer     NAB's scoring: windows, probation, scaled sigmoid, profiles, threshold sweep
    replay     each row judged on its history, batched over windows (prepare + Ensemble)
    detectors  named configurations (default, classic-7, classic-9, ...)

See docs/benchmarks.md.
"""
