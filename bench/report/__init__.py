"""The report stage: saved runs -> checked rows -> derived figures -> tables, plots, one page (python -m bench report).

Modules follow the data: schema (the saved-run format), load (runs to one table, machine
labels), figures (speedups, crossovers, breakdowns, answers), tables, plots, page (the files,
written whole), cli. Only this stage imports pandas, matplotlib, seaborn and jinja2; none of
it imports torch.
"""

from bench.report.cli import main
from bench.report.load import RunFileWarning, load_frame
from bench.report.page import write_report

__all__ = ["RunFileWarning", "load_frame", "main", "write_report"]
