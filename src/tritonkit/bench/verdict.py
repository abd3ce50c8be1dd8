"""The bench's answer: the seed's table (one row per setup at its best concurrency) and the verdict in sentences.

Every ratio is taken between rows of the same run. A row is one served model, configuration and request size;
its best cell is the one with the most throughput whose p99 is within the budget and that saw no failure (the
most throughput at all when no budget is given).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.runner import Cell
from tritonkit.bench.session import BenchResult, row_key
from tritonkit.bench.text import paragraph, table
from tritonkit.repository.compiled import COMPILE_PARAMETER

__all__ = ["Row", "seed_rows", "seed_table", "verdict"]


@dataclass(frozen=True)
class Row:
    key: str
    setup: str
    best: Cell
    limit: str


def _ok(cell: Cell, budget_ms: float | None) -> bool:
    within = budget_ms is None or cell.p99_ms <= budget_ms
    return within and not cell.failures and not cell.server_failures and cell.samples_per_s > 0


def setup_name(cell: Cell) -> str:
    frames = f" ×{cell.frames_per_request}/req" if cell.frames_per_request > 1 else ""
    return cell.label + frames


def seed_rows(result: BenchResult, budget_ms: float | None) -> list[Row]:
    """One row per setup of the bench's model (the no-work stand-in is not a setup), in the order measured."""
    rows: dict[str, list[Cell]] = {}
    for cell in result.cells:
        if cell.model == result.model:
            rows.setdefault(row_key(cell), []).append(cell)
    chosen = []
    for key, cells in rows.items():
        eligible = [cell for cell in cells if _ok(cell, budget_ms)]
        if eligible:
            best = max(eligible, key=lambda cell: cell.samples_per_s)
            chosen.append(Row(key, setup_name(best), best, result.stops.get(key, "")))
    return chosen


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def seed_table(rows: Sequence[Row]) -> str:
    """Setup | Throughput | p50 | p99 | avg batch | served/raw: 80 columns (the per-cell table has the concurrency)."""
    body = [
        [
            row.setup,
            f"{row.best.samples_per_s:,.0f}/s",
            _ms(row.best.p50_ms),
            _ms(row.best.p99_ms),
            f"{row.best.average_batch:.1f}",
            "-" if math.isnan(row.best.efficiency) else f"{row.best.efficiency:.2f}",
        ]
        for row in rows
    ]
    return table(["Setup", "Throughput", "p50 ms", "p99 ms", "avg batch", "served/raw"], body)


def _find(rows: Sequence[Row], test: Callable[[Cell], bool]) -> Row | None:
    return next((row for row in rows if test(row.best)), None)


def _rate(row: Row) -> float:
    return row.best.samples_per_s


def _x(a: Row, b: Row) -> str:
    return f"{a.best.samples_per_s / b.best.samples_per_s:.2f}×" if b.best.samples_per_s else "-"


def verdict(result: BenchResult, budget_ms: float | None, *, width: int = 80) -> str:
    """The answer in plain sentences with ratios, wrapped at ``width``."""
    rows = seed_rows(result, budget_ms)
    context: Mapping[str, object] = result.context
    sentences: list[str] = []
    if not rows:
        budget = f" under the p99 budget of {budget_ms:g} ms" if budget_ms is not None else ""
        return paragraph(f"No setup served without failures{budget}.", width=width)

    def config(cell: Cell) -> BenchConfig:
        return result.configs[cell.config]

    def single(cell: Cell) -> bool:
        gpus = config(cell).gpus
        return cell.frames_per_request == 1 and (gpus is None or len(gpus) == 1)

    def plain(cell: Cell) -> bool:
        c = config(cell)
        return single(cell) and not c.batching and not c.own_processes and not c.mps and not c.parameters

    one = _find(rows, lambda c: plain(c) and config(c).instances == 1)
    many = max((r for r in rows if plain(r.best) and config(r.best).instances > 1), key=_rate, default=None)
    if one and many:
        sentences.append(
            f"{config(many.best).instances} instances without batching served {many.best.samples_per_s:,.0f}/s "
            f"against {one.best.samples_per_s:,.0f}/s for one instance: {_x(many, one)}."
        )
    batching = [r for r in rows if single(r.best) and config(r.best).batching and not config(r.best).mps]
    best_batching = max(batching, key=_rate, default=None)
    other = many or one
    if best_batching and other:
        vs_one = f", and {_x(best_batching, one)} one instance without it" if one and other is not one else ""
        sentences.append(
            f"Dynamic batching ({best_batching.setup}) served {best_batching.best.samples_per_s:,.0f}/s with an "
            f"average batch of {best_batching.best.average_batch:.1f}: {_x(best_batching, other)} "
            f"{other.setup} without batching{vs_one}."
        )
    own = _find(rows, lambda c: single(c) and config(c).own_processes and not config(c).mps)
    mps = _find(rows, lambda c: single(c) and config(c).mps)
    if own and many:
        sentences.append(
            f"The same instances in their own processes, one CUDA context each (the GPU time-slices them), "
            f"served {own.best.samples_per_s:,.0f}/s: {_x(own, many)} tritonkit's shared executor "
            f"({many.best.samples_per_s:,.0f}/s)."
        )
    if mps and many:
        sentences.append(
            f"Under an MPS daemon those processes served {mps.best.samples_per_s:,.0f}/s: {_x(mps, many)} the "
            "shared executor, which needs no daemon."
        )
    for script in [r for r in rows if single(r.best) and config(r.best).compile_override == "false"]:
        # The same configuration without +script: the model's own compiled program.
        twin = dataclasses.replace(
            config(script.best),
            parameters=tuple(p for p in config(script.best).parameters if p[0] != COMPILE_PARAMETER),
        )
        compiled = next((r for r in rows if single(r.best) and config(r.best) == twin), None)
        if compiled:
            loads = context.get("load_s")
            loads = loads if isinstance(loads, Mapping) else {}
            compiled_load, script_load = loads.get(config(compiled.best).key), loads.get(config(script.best).key)
            waits = ""
            if isinstance(compiled_load, float) and isinstance(script_load, float):
                waits = f"; it loaded in {compiled_load:.1f} s against {script_load:.1f} s"
            sentences.append(
                f"Compiled, {compiled.setup} served {compiled.best.samples_per_s:,.0f}/s against "
                f"{script.best.samples_per_s:,.0f}/s from the TorchScript file: {_x(compiled, script)}; p50 "
                f"{compiled.best.p50_ms:.2f} ms against {script.best.p50_ms:.2f} ms{waits}."
            )
    full = _find(rows, lambda c: c.frames_per_request > 1)
    if full and not math.isnan(full.best.efficiency):
        sentences.append(
            f"With {full.best.frames_per_request}-sample requests, {full.best.label} served "
            f"{full.best.samples_per_s:,.0f} samples/s, {full.best.efficiency:.2f} of the raw model at batch "
            f"{full.best.raw_batch} ({full.best.raw_samples_per_s:,.0f}/s, same run)."
        )
    ceiling = context.get("ceiling") or {}
    ceiling_samples = ceiling.get("samples_per_s") if isinstance(ceiling, Mapping) else None
    reference = context.get("reference_config")
    ref_row = _find(rows, lambda c: single(c) and c.config == reference)
    if ceiling_samples and ref_row:
        share = ref_row.best.samples_per_s / ceiling_samples
        headroom = "so the client side did not limit it"
        if share > 1 / 3:
            headroom = "so the client and serving path may limit it"
        sentences.append(
            f"The serving path alone (a no-work model with the same inputs, outputs and configuration, same load) "
            f"carried {ceiling_samples:,.0f}/s, {ceiling_samples / ref_row.best.samples_per_s:.1f}× what "
            f"{ref_row.setup} served: it takes about {share:.0%} of the time a request is served in, {headroom}."
        )
    elif isinstance(ceiling, Mapping) and ceiling.get("note"):
        sentences.append(str(ceiling["note"]).rstrip(".") + ".")
    multi = _find(rows, lambda c: len(config(c).gpus or ()) > 1)
    if multi:
        spread = config(multi.best)

        def counterpart(cell: Cell) -> bool:
            c = config(cell)
            same = (c.instances, c.max_batch, c.queue_delay_us, c.parameters, c.mps)
            return single(cell) and same == (
                spread.instances,
                spread.max_batch,
                spread.queue_delay_us,
                spread.parameters,
                spread.mps,
            )

        one_gpu = _find(rows, counterpart)
        if one_gpu:
            sentences.append(
                f"One instance group on each of {len(spread.gpus or ())} GPUs served "
                f"{multi.best.samples_per_s:,.0f}/s against {one_gpu.best.samples_per_s:,.0f}/s on one: "
                f"{_x(multi, one_gpu)}."
            )
        spread_ceilings = context.get("spread_ceilings")
        entry = spread_ceilings.get(spread.key) if isinstance(spread_ceilings, Mapping) else None
        carried = entry.get("samples_per_s") if isinstance(entry, Mapping) else None
        if isinstance(carried, int | float) and carried > 0:
            times = carried / multi.best.samples_per_s
            limit = "so the client side did not limit them" if times >= 3 else "so the client side may limit them"
            sentences.append(
                f"At the same load the no-work stand-in carried {carried:,.0f}/s, {times:.1f}× what those GPUs "
                f"served, {limit}."
            )
    settings = context.get("settings")
    frames = int(settings.get("frames_per_request", 1)) if isinstance(settings, Mapping) else 1
    best = max((r for r in rows if r.best.frames_per_request == frames), key=_rate, default=rows[0])
    budget = f"within p99 {budget_ms:g} ms" if budget_ms is not None else "with no latency budget given"
    size = "one-sample-a-request" if frames == 1 else f"{frames}-samples-a-request"
    sentences.append(
        f"Best {size} setup {budget}: {best.setup} at {best.best.concurrency} requests in flight, "
        f"{best.best.samples_per_s:,.0f}/s, p99 {best.best.p99_ms:.1f} ms."
    )
    lines = [paragraph(sentence, width=width) for sentence in sentences]
    limits = [paragraph(f"{row.setup}: {row.limit}.", width=width, bullet="- ") for row in rows if row.limit]
    if limits:
        lines.append("What limited each setup at its last step:")
        lines.extend(limits)
    elapsed_s = context.get("elapsed_s")
    elapsed = float(elapsed_s) if isinstance(elapsed_s, int | float) else 0.0
    minutes, seconds = divmod(round(elapsed), 60)
    lines.append(f"The bench took {minutes} min {seconds:02d} s." if minutes else f"The bench took {seconds} s.")
    return "\n".join(lines)
