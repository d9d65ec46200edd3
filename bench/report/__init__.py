"""The report stage: saved runs to tables, plots and pages (python -m bench report), and two runs compared
(python -m bench compare). The rows and the figures it shows are the analysis stage's (bench/analysis/), the
same the end-of-run answer words; this stage lays them out. docs/design.md says what each module does.
"""
