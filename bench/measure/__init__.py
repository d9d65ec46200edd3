"""The measuring stage: one case on one device (plan and budgets, rounds, the clock, telemetry, machine facts).

It imports torch and the workload, never pytest, pandas or matplotlib (docs/design.md).
"""
