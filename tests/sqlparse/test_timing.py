"""What classify() and redact() cost per call by cache outcome (printed with -s, not asserted)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bastion.sqlparse import cache_clear, classify, redact

PGBENCH = "SELECT abalance FROM pgbench_accounts WHERE aid = {n};"
PGBENCH_SHAPES = "SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND c{n} = 2;"
JOIN = (
    "SELECT c.id, c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id "
    "WHERE o.created_at > now() - interval '7 days' AND c.region IN ('eu', 'us') AND o.id > {n} "
    "ORDER BY o.total DESC LIMIT 50"
)
JOIN_SHAPES = JOIN.replace("o.total DESC", "o.total{n} DESC").replace("o.id > {n}", "o.id > 1")
COUNT = 2000


def per_call_us(function: Callable[[str], object], texts: list[str]) -> float:
    cache_clear()
    function(texts[0])  # warm the first entry: the "same text" row measures pure hits
    start = time.perf_counter()
    for text in texts:
        function(text)
    return (time.perf_counter() - start) / len(texts) * 1e6


def test_report_costs() -> None:
    lines = ["", "per call, us: same text | new literal, known shape | new shape (nothing cached)"]
    for label, template, shapes in (
        ("pgbench -S", PGBENCH, PGBENCH_SHAPES),
        ("join", JOIN, JOIN_SHAPES),
    ):
        for name, function in (("classify", classify), ("redact", redact)):
            same = per_call_us(function, [template.format(n=1)] * COUNT)
            literal = per_call_us(function, [template.format(n=n) for n in range(COUNT)])
            shape = per_call_us(function, [shapes.format(n=n) for n in range(COUNT)])
            lines.append(f"{name:8} {label:10}: {same:6.2f} | {literal:6.1f} | {shape:6.1f}")
    cache_clear()
    print("\n".join(lines))
