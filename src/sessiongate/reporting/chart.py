"""The report's chart: daily active users as bars, the month before as a line.

matplotlib is the optional extra `sessiongate[report]`: without it `available()` is False and
the report goes out without a chart (saying so). Drawn headless with the Agg backend.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from typing import Any

from sessiongate.reporting.content import is_empty

NO_ACTIVITY = "no activity recorded"
_LOCK = threading.Lock()  # pyplot's figure registry is global state


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def render_png(report: dict[str, Any]) -> bytes | None:
    """The chart as PNG bytes, or None without matplotlib."""
    if not available():
        return None
    import matplotlib.pyplot as plt

    with _LOCK:
        fig = draw(report)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            return buf.getvalue()
        finally:
            plt.close(fig)


def draw(report: dict[str, Any]) -> Any:
    """The matplotlib Figure (the caller closes it); needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    title = f"{report['account_id']}: daily active users, {report['period']}"
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if is_empty(report):
        ax.set_axis_off()
        ax.set_title(title)
        ax.text(0.5, 0.5, f"{report['period']}: {NO_ACTIVITY}", ha="center",
                va="center", fontsize=16, color="#444444", transform=ax.transAxes)
    else:
        days = [int(d["day"][8:]) for d in report["days"]]
        users = [d["active_users"] for d in report["days"]]
        ax.bar(days, users, color="#2f6db5", label=f"{report['period']} (bars)")
        before = [(int(d["day"][8:]), d["active_users"])
                  for d in report.get("previous_days", [])]
        if before:
            ax.plot([b[0] for b in before], [b[1] for b in before], color="#d9822b",
                    linewidth=2, marker="o", markersize=3,
                    label=f"{report.get('previous_period', 'previous month')} (line)")
        top = max([1, *users, *(b[1] for b in before)])
        ax.set_ylim(0, top * 1.3)  # headroom for the legend
        ax.set_xlim(0.4, max([*days, *(b[0] for b in before), 1]) + 0.6)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("day of month")
        ax.set_ylabel("active users")
        ax.set_title(title)
        ax.legend(loc="upper left", ncols=2, frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig
