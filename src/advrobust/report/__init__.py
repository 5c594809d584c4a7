"""The HTML report: adversarial examples, robustness curves and tables in one self-contained page.

    from advrobust.report import write_report
    write_report("report.html", evaluation, audit=audit_result)

:mod:`~advrobust.report.views` reads results into plain data, :mod:`~advrobust.report.figures`
draws them (matplotlib, Agg), :mod:`~advrobust.report.html` assembles the escaped page and
:mod:`~advrobust.report.writer` writes the page, its PNG figures and its JSON.
"""

from advrobust.report.writer import REPORT_FORMAT, write_report

__all__ = ["REPORT_FORMAT", "write_report"]
