"""The weekly report's charts drawn by matplotlib as SVG, the same bytes for the same series.

Pure: no pyplot and no global figure state; rcParams are set only for the length of one
drawing. Determinism: `svg.hashsalt` fixes the ids, the SVG's Date metadata is dropped and
text is drawn as paths from the font matplotlib ships (so the bytes do not depend on the
fonts installed). Labels come from the store (people, targets): math text is off, so a
name with dollar signs is drawn as typed, and matplotlib escapes what it writes in the
SVG's comments. Many series are folded: the largest ones by name, the rest as "others".
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bastion.reports.columns import encodable
from bastion.reports.model import Series

if TYPE_CHECKING:  # matplotlib itself is imported when a chart is drawn (it takes 0.7 s)
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

MAX_SERIES = 10  # people in the per-day chart before the rest become "others"
MAX_BARS = 25  # targets in the hours chart before the rest become "others"

_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "bastion-weekly-report",
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def fold(values: Mapping[str, tuple[float, ...]], keep: int) -> dict[str, tuple[float, ...]]:
    """The `keep` largest series by total (ties by name), the rest summed as "others (N)"."""
    order = sorted(values, key=lambda name: (-sum(values[name]), name))
    if len(order) <= keep:
        return {name: values[name] for name in sorted(values)}
    kept = sorted(order[: keep - 1])
    rest = order[keep - 1 :]
    width = len(values[rest[0]])
    others = tuple(sum(values[name][i] for name in rest) for i in range(width))
    return {**{name: values[name] for name in kept}, f"others ({len(rest)})": others}


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    """A figure drawn and saved under the report's rcParams only."""
    import matplotlib as mpl  # noqa: PLC0415 - lazy, see the TYPE_CHECKING import
    from matplotlib.figure import Figure  # noqa: PLC0415

    with mpl.rc_context(_RC):
        yield Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def sessions_per_day(series: Series) -> bytes:
    """Stacked bars: sessions on each local day, one colour a person."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    values = fold(series.values, MAX_SERIES)
    with _figure(7.0, 3.0) as figure:
        axes = figure.add_subplot()
        bottom = [0.0] * len(series.labels)
        positions = list(range(len(series.labels)))
        for name, row in values.items():
            axes.bar(positions, row, bottom=bottom, label=encodable(name), width=0.7)
            bottom = [b + v for b, v in zip(bottom, row, strict=True)]
        axes.set_xticks(positions, [encodable(label) for label in series.labels])
        axes.set_ylabel("sessions")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if values:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _svg(figure)


def hours_per_target(series: Series) -> bytes:
    """Horizontal bars: hours spent on each target, the largest at the top."""
    hours = dict(zip(series.labels, next(iter(series.values.values()), ()), strict=True))
    folded = fold({name: (value,) for name, value in hours.items()}, MAX_BARS)
    ranked = sorted(folded.items(), key=lambda item: (-item[1][0], item[0]))
    with _figure(7.0, 1.0 + 0.28 * max(len(ranked), 1)) as figure:
        axes = figure.add_subplot()
        names = [encodable(name) for name, _ in ranked][::-1]
        axes.barh(names, [value[0] for _, value in ranked][::-1], height=0.6)
        axes.set_xlabel("hours")
        return _svg(figure)


DRAWERS = {"sessions_per_day": sessions_per_day, "hours_per_target": hours_per_target}


_DRAWING = threading.Lock()  # matplotlib's rcParams are global: one drawing at a time
_PENDING: dict[tuple[Any, ...], Future[bytes | None]] = {}


def _content(series: Series) -> tuple[Any, ...]:
    return (series.key, series.title, series.labels, tuple(sorted(series.values.items())))


def predraw(charts: Sequence[Series]) -> None:
    """Start drawing these charts in a thread of their own: importing matplotlib and drawing
    take most of a second, which the weekly build spends while it waits for its verification;
    draw() then takes the finished drawing (or waits for it). A later call forgets the
    drawings an earlier one made and nobody took; draw() then draws again."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="charts")
    _PENDING.clear()  # one build's drawings at a time: one never rendered is not kept
    for series in charts:
        _PENDING[_content(series)] = pool.submit(_draw, series)
    pool.shutdown(wait=False)  # the worker ends when its drawings are done


def draw(series: Series) -> bytes | None:
    """The chart of a series as SVG bytes; None when it has nothing to show or no drawer."""
    pending = _PENDING.pop(_content(series), None)
    return pending.result() if pending is not None else _draw(series)


def _draw(series: Series) -> bytes | None:
    drawer = DRAWERS.get(series.key)
    if drawer is None or not any(v for row in series.values.values() for v in row):
        return None
    with _DRAWING:
        return drawer(series)
