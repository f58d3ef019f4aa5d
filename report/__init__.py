"""The review room: the results database as pages a person reads, offline or served live from this machine.

    autointerp report --out review/            # a static site: open review/index.html, no network needed
    autointerp serve                           # the same pages live on http://127.0.0.1:8000, plus "try a text"

    >>> from autointerp.report import Filters, build_site
    >>> build_site("autointerp.db", "review/", Filters(layer=13)).wall_s

``data.py`` reads the file read-only; ``pages.py`` decides what each page shows; ``checks.py`` recomputes each
score's confidence interval and negative control; ``plots.py`` draws with matplotlib to inline SVG; ``render.py``
holds the jinja2 environment (autoescape everywhere); ``site.py`` builds the static site; ``server.py`` (Starlette
on uvicorn), ``state.py`` (the unit list kept fresh, the rendered pages kept) and ``live.py`` are ``serve``. Imports errors, subject, scoring and db (upstream rooms) and config.
"""

from autointerp.report.data import Filters, ReportData, open_readonly
from autointerp.report.site import BuildResult, build_site

__all__ = ["BuildResult", "Filters", "ReportData", "build_site", "open_readonly"]
