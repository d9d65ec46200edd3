"""The checks: variants compared in fresh processes or interleaved in one (python -m bench check-*)."""
