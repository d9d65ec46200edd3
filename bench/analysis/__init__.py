"""What the end-of-run answer and the report both derive from saved runs: intervals, the limits model, the tidy
table of rows, the derived figures and their words. No plotting and no page: those are the report's.

Its modules that need pandas are imported by the run stage only once its last case has finished.
"""
