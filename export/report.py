"""The benchmark's outputs: the markdown table people read first, the CSV, the charts, and a comparison of runs.

Every figure is printed with its 95% interval, and a noisy one is marked ``~``
(its interval is wider than +-10%, or other processes took the CPU meanwhile)
and drawn hollow in the charts: a number printed plain is one a re-run should
confirm. The header names the CPU's instruction-set features and the GEMM peaks
every figure's GMAC/s is a share of. The engines' columns, CSV rows and chart styles come from the
results' ``engines`` (export.bench's records), so a new engine needs nothing here.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.core.console import format_table
from zoo.core.errors import ArgumentError
from zoo.core.files import atomic_write_bytes, check_readable
from zoo.core.plots import png_bytes

if TYPE_CHECKING:  # matplotlib is imported lazily, by the charts only
    from matplotlib.figure import Figure

__all__ = ["COMPARABLE", "SCHEMA", "batch_chart", "compare", "cost_chart", "peak_chart", "read_results", "table_rows",
           "write_results"]

SCHEMA = "zoo.bench/4"
"""The results document export.bench writes; /3 added ``engines`` (what each engine is: label, baseline, device,
chart style) and each model's ``build`` (how each engine's build went); /4 added the CPU's ``cpu_features`` (in
``environment``), ``peak_gmacs`` per thread count, ``unavailable`` engines, each engine's ``precision``, and each
latency's ``gmacs`` and ``of_peak``."""
COMPARABLE = ("zoo.bench/2", "zoo.bench/3", SCHEMA)
"""Schemas whose figures (``latency_ms``, ``speedup``) --compare reads alike."""
BUILD_SHOWN_S = 1.0
"""A build this long is worth a word in the table (torch.compile's compile, int8's calibration); a failed one always is."""


def _colour(i: int) -> Any:
    """One colour per model, 20 before any repeats; black is kept for the engines' legend."""
    import matplotlib  # noqa: PLC0415 lazy: matplotlib costs start-up time; only the charts need it

    return matplotlib.colormaps["tab20"](i % 20)


def fmt(figure: dict[str, Any] | None, digits: int = 3) -> str:
    """``median [low, high]``, marked ``~`` when noisy; ``-`` for a figure not measured."""
    if figure is None:
        return "-"
    low, high = figure["ci95"]
    return f"{'~' if figure['noisy'] else ''}{figure['median']:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def table_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per model and thread count, what matters first: size, accuracy, then per engine latency, throughput
    and speed-up over its baseline, and the builds worth a word; the columns follow results' engines."""
    engines = results["engines"]
    measured = [e for e in engines if any(e in (m["accuracy"] or {}) for m in results["models"])]
    accuracy_column = f"top-1 % {' / '.join(engines[e]['label'] for e in measured)}"
    rows = []
    for m in results["models"]:
        acc = m["accuracy"]
        rows.append({
            "model": m["name"] + (" (noisy)" if m["noisy"] else ""),
            "threads": str(m["threads"]),
            "params (M)": f"{m['params'] / 1e6:.2f}",
            "MACs (M)": f"{m['macs'] / 1e6:.1f}",
            accuracy_column: " / ".join(f"{acc[e] * 100:.2f}" if e in acc else "-" for e in measured) if acc else "-",
            **_engine_columns(m, engines, str(max(results["settings"]["batch_sizes"]))),
            "builds": _builds(m["build"], engines),
        })
    return rows


def _engine_columns(m: dict[str, Any], engines: dict[str, dict[str, Any]], largest: str) -> dict[str, str]:
    """Per engine, in the run's order: batch-1 latency, throughput at the largest batch, speed-ups over its baseline."""
    label = {e: d["label"] for e, d in engines.items()}
    columns = {f"b1 ms {label[e]}": fmt(m["latency_ms"].get(e, {}).get("1")) for e in engines}
    columns |= {f"img/s b{largest} {label[e]}": fmt(m["throughput_ips"].get(e)) for e in engines}
    for e, d in engines.items():
        if d["baseline"]:
            ratio, figures = f"{label[e]}/{label.get(d['baseline'], d['baseline'])}", m["speedup"].get(e, {})
            columns[f"{ratio} b1"] = fmt(figures.get("latency_b1"))
            if largest != "1":
                columns[f"{ratio} b{largest}"] = fmt(figures.get("throughput"))
    return columns


def _builds(builds: dict[str, dict[str, Any]], engines: dict[str, dict[str, Any]]) -> str:
    """The builds that failed (why: no engine then) or took BUILD_SHOWN_S or more (how long); ``-`` for none."""
    said = [f"{engines[e]['label']} {b['build_s']:.0f} s" if b["status"] == "ok" else f"{engines[e]['label']}: {b['status']}"
            for e, b in builds.items() if b["status"] != "ok" or b["build_s"] >= BUILD_SHOWN_S]
    return "; ".join(said).replace("|", "\\|") or "-"


def write_markdown(results: dict[str, Any], path: Path) -> Path:
    rows = table_rows(results)
    columns = [c for c in rows[0] if any(r[c] != "-" for r in rows)] if rows else []
    env, settings, data = results["environment"], results["settings"], results["data"]
    measured = any(m["accuracy"] for m in results["models"])
    accuracy = ("" if data is None or not measured else f" Top-1 on {data['test_images']:,} test images"
                + (" (zoo's shipped sample of the test set, not the full set)." if data["sample"] else " (the full test set)."))
    header = (
        f"Input {'x'.join(map(str, settings['input_size']))} ({settings['input']}), {env['cpu']} ({features_line(env)}), "
        f"load {env['load_average_1min']:.2f} -> {env['load_average_1min_after']:.2f}. Latency: median over "
        f"{settings['rounds']}+ interleaved rounds [95% interval], ms; a speed-up is the median per-round ratio "
        f"(>1: the first engine named is faster). ~ marks a noisy figure: its interval is wider than +-{env['noisy_beyond']:.0%}, "
        f"or other processes took more than {env['noisy_when_others_take']:.0%} of the CPU while it was timed."
        f"{accuracy}"
    )
    notes = "".join(f"\n- {n}" for n in _notes(results))
    atomic_write_bytes(path, f"{header}\n{notes}\n\n{format_table(rows, columns)}\n".encode())
    return path


def features_line(env: dict[str, Any]) -> str:
    """The CPU's instruction-set features as one line: ``avx2 avx512f -avx512_vnni ...`` (``-``: absent)."""
    features = env.get("cpu_features")
    return " ".join(k if v else f"-{k}" for k, v in features.items()) if features else "features not recorded"


def _notes(results: dict[str, Any]) -> list[str]:
    """The peaks every GMAC/s is a share of, what each engine is, and one line per engine that could not run."""
    peaks = [f"{t} threads: " + ", ".join(f"{p} {v:g}" for p, v in by.items()) for t, by in results.get("peak_gmacs", {}).items()]
    engines = results["engines"]
    what = ", ".join(f"{d['label']} = {e} ({d['precision']}" + (f", vs {engines.get(d['baseline'], {}).get('label', d['baseline'])})"
                                                              if d["baseline"] else ")") for e, d in engines.items())
    return [f"GEMM peak, GMAC/s (each figure's `of_peak` in results.json and the CSV is a share of its precision's): "
            f"{'; '.join(peaks)}", f"Engines: {what}.", *(f"{e}: {why}" for e, why in results.get("unavailable", {}).items())]


def write_csv(results: dict[str, Any], path: Path) -> Path:
    """Flat numbers per model, engine and batch size: latency (median and interval ends), GMAC/s and its share of
    the peak, the speed-up over the engine's baseline where measured (batch 1 and the largest), accuracy."""
    speedup_at = {str(max(results["settings"]["batch_sizes"])): "throughput", "1": "latency_b1"}
    rows = []
    for m in results["models"]:
        for engine, by_batch in m["latency_ms"].items():
            for batch, fig in by_batch.items():
                speedup = m["speedup"].get(engine, {}).get(speedup_at.get(batch, ""))
                rows.append({"model": m["name"], "threads": m["threads"], "engine": engine,
                             "device": results["engines"][engine]["device"], "batch": batch, "latency_ms": fig["median"],
                             "ci95_low": fig["ci95"][0], "ci95_high": fig["ci95"][1], "noisy": fig["noisy"],
                             "precision": results["engines"][engine]["precision"], "gmacs": fig["gmacs"],
                             "of_peak": fig["of_peak"],
                             "baseline": results["engines"][engine]["baseline"], **_speedup_cells(speedup),
                             "accuracy": (m["accuracy"] or {}).get(engine)})
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def _speedup_cells(fig: dict[str, Any] | None) -> dict[str, Any]:
    fig = fig or {"median": None, "ci95": [None, None], "noisy": None}
    return {"speedup": fig["median"], "speedup_ci95_low": fig["ci95"][0], "speedup_ci95_high": fig["ci95"][1],
            "speedup_noisy": fig["noisy"]}


def cost_chart(results: dict[str, Any], accuracy: bool) -> Figure:
    """Accuracy (or MACs) against batch-1 latency: one colour per model, one marker per engine; the names are in
    the legend, not on the points, so that they never overlap."""
    import matplotlib.ticker  # noqa: PLC0415 lazy: matplotlib costs start-up time; only the charts need it
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: as above

    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    engines, drawn = results["engines"], set()
    for i, m in enumerate(results["models"]):  # i: the model's colour, the same in every chart
        if accuracy and not m["accuracy"]:
            continue
        for engine, d in engines.items():
            if engine in m["latency_ms"] and (not accuracy or engine in m["accuracy"]):
                y = m["accuracy"][engine] * 100 if accuracy else m["macs"] / 1e6
                fig1 = m["latency_ms"][engine]["1"]
                _point(ax, fig1["median"], y, _colour(i), d["marker"], fig1["noisy"])
                drawn.add(engine)
        ax.scatter([], [], color=_colour(i), marker="o", label=f"{m['name']} ({m['threads']} thr)")
    _engine_legend(ax, engines, drawn)
    ax.set_xscale("log")
    if not accuracy:  # 30M to 500M MACs: a log axis keeps the GoogLeNets apart
        ax.set_yscale("log")
        for set_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            set_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("latency at batch 1, median (ms, log scale)")
    ax.set_ylabel("top-1 accuracy (%)" if accuracy else "MACs per image (millions)")
    ax.set_title(("accuracy" if accuracy else "cost") + " against latency: the paper's efficiency question")
    return _finish(fig, ax)


def batch_chart(results: dict[str, Any]) -> Figure:
    """Latency against batch size: one colour per model, one line style per engine, with the 95% interval."""
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: matplotlib costs start-up time; only the charts need it

    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    engines = results["engines"]
    for i, m in enumerate(results["models"]):
        for engine, by_batch in m["latency_ms"].items():
            batches = sorted(by_batch, key=int)
            xs = [int(b) for b in batches]
            ax.plot(xs, [by_batch[b]["median"] for b in batches], linestyle=engines[engine]["line"], color=_colour(i))
            for x, b in zip(xs, batches):
                _point(ax, x, by_batch[b]["median"], _colour(i), engines[engine]["marker"], by_batch[b]["noisy"], size=18)
            ax.fill_between(xs, [by_batch[b]["ci95"][0] for b in batches], [by_batch[b]["ci95"][1] for b in batches],
                            color=_colour(i), alpha=0.1, lw=0)
        ax.plot([], [], color=_colour(i), label=f"{m['name']} ({m['threads']} thr)")
    for engine in (e for e in engines if any(e in m["latency_ms"] for m in results["models"])):
        ax.plot([], [], linestyle=engines[engine]["line"], marker=engines[engine]["marker"], color="black", label=engine)
    ax.scatter([], [], facecolors="none", edgecolors="black", marker="o", label=NOISY_LEGEND)
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["settings"]["batch_sizes"], [str(b) for b in results["settings"]["batch_sizes"]])
    ax.set_yscale("log")
    _log_ticks(ax.yaxis)
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency, median (ms)")
    ax.set_title("latency against batch size")
    return _finish(fig, ax)


def peak_chart(results: dict[str, Any]) -> Figure:
    """Roofline-style: each figure's rate (GMAC/s) against the work of one call (MACs x batch), under the GEMM
    peaks drawn as ceilings; one colour per model, one marker per engine, noisy figures hollow. Left, per-operator
    overhead on small work keeps every engine far below the ceiling; right, the distance left is the engine's."""
    from matplotlib.figure import Figure  # noqa: PLC0415 lazy: matplotlib costs start-up time; only the charts need it

    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    engines, drawn = results["engines"], set()
    for i, m in enumerate(results["models"]):
        for engine, by_batch in m["latency_ms"].items():
            for batch, f in by_batch.items():
                _point(ax, m["macs"] * int(batch) / 1e6, f["gmacs"], _colour(i), engines[engine]["marker"], f["noisy"])
                drawn.add(engine)
        ax.scatter([], [], color=_colour(i), marker="o", label=f"{m['name']} ({m['threads']} thr)")
    _engine_legend(ax, engines, drawn)
    for j, (threads, peaks) in enumerate(results.get("peak_gmacs", {}).items()):
        for k, (precision, value) in enumerate(peaks.items()):
            ax.axhline(value, color="grey", linestyle=("-", "--", ":")[k % 3], lw=1, alpha=0.8 - 0.2 * j,
                       label=f"peak {precision}, {threads} thr: {value:g} GMAC/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        _log_ticks(axis)
    ax.set_xlabel("work per call: MACs x batch (millions, log scale)")
    ax.set_ylabel("GMAC/s at the median latency (log scale)")
    ax.set_title("distance to the limit: each engine's rate under the machine's GEMM peaks")
    return _finish(fig, ax)


def _log_ticks(axis: Any) -> None:
    """A log axis labelled at 1, 2 and 5 of each decade in plain numbers, so that a narrow range still has labels."""
    import matplotlib.ticker  # noqa: PLC0415 lazy: matplotlib costs start-up time; only the charts need it

    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


NOISY_LEGEND = "hollow: noisy (interval > +-10% or CPU contended)"


def _point(ax: Any, x: float, y: float, colour: Any, marker: str, noisy: bool, size: float = 60) -> None:
    """One figure's point: filled, or hollow when noisy."""
    if noisy:
        ax.scatter(x, y, facecolors="none", edgecolors=[colour], marker=marker, s=size, linewidths=1.3)
    else:
        ax.scatter(x, y, color=colour, marker=marker, s=size, alpha=0.85)


def _engine_legend(ax: Any, engines: dict[str, dict[str, Any]], drawn: set[str]) -> None:
    """A black marker per engine drawn, and what a hollow one means."""
    for engine in (e for e in engines if e in drawn):
        ax.scatter([], [], color="black", marker=engines[engine]["marker"], label=engine)
    ax.scatter([], [], facecolors="none", edgecolors="black", marker="o", label=NOISY_LEGEND)


def _finish(fig: Figure, ax: Any) -> Figure:
    """A grid, the legend right of the axes, the layout tightened."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def write_results(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json (every round), results.csv, results.md and the charts in ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json"]
    atomic_write_bytes(paths[0], (json.dumps(results, indent=2) + "\n").encode())
    paths += [write_csv(results, out / "results.csv"), write_markdown(results, out / "results.md")]
    charts = {"macs_vs_latency.png": cost_chart(results, accuracy=False), "latency_vs_batch.png": batch_chart(results),
              "gmacs_vs_peak.png": peak_chart(results)}
    if any(m["accuracy"] for m in results["models"]):
        charts["accuracy_vs_latency.png"] = cost_chart(results, accuracy=True)
    for name, fig in charts.items():
        atomic_write_bytes(out / name, png_bytes(fig, dpi=120))
        paths.append(out / name)
    return paths


_BASELINES_BEFORE_3 = {"onnxruntime": "torch", "int8": "onnxruntime", "compile": "torch"}
"""The baselines of zoo.bench/2, whose results did not record them: a speed-up compares only over the same baseline."""


def _figures(results: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    found = {}
    for m in results["models"]:
        for engine, by_batch in m["latency_ms"].items():
            for batch, fig in by_batch.items():
                found[(m["name"], m["threads"], f"{engine} latency b{batch}")] = fig
        for engine, figs in m["speedup"].items():
            over = results.get("engines", {}).get(engine, {}).get("baseline") or _BASELINES_BEFORE_3.get(engine)
            for what, fig in figs.items():
                found[(m["name"], m["threads"], f"{engine}/{over} speed-up {what}")] = fig
    return found


def read_results(path: Path) -> dict[str, Any]:
    """An earlier results.json that --compare reads; anything else is refused, naming the file and what to pass."""
    def refused(problem: str) -> ArgumentError:
        return ArgumentError(f"cannot compare with {path}: {problem}; pass the results.json an earlier zoo bench "
                             "--out wrote")

    check_readable(path, ArgumentError)
    try:
        old = json.loads(Path(path).read_text())
    except OSError as e:
        raise refused(e.strerror or str(e)) from None
    except ValueError as e:
        raise refused(f"not JSON ({e})") from None
    if not isinstance(old, dict):
        raise refused(f"a JSON {type(old).__name__}, not a results object")
    if old.get("schema") not in COMPARABLE:
        raise refused(f"schema {old.get('schema')!r}; this run reads {', '.join(COMPARABLE)}")
    try:
        figures = _figures(old)
    except (KeyError, TypeError, AttributeError) as e:
        raise refused(f"its figures do not read ({type(e).__name__}: {e})") from None
    if not all(map(_readable, figures.values())):
        raise refused("a figure lacks a number median or a ci95 of two numbers")
    bad = next((key for key, fig in figures.items() if not all(map(math.isfinite, [fig["median"], *fig["ci95"]]))), None)
    if bad is not None:  # NaN compares as unchanged with everything
        raise refused(f"figure {' / '.join(map(str, bad))} is not finite (median {figures[bad]['median']}, ci95 "
                      f"{figures[bad]['ci95']})")
    return old


def _readable(fig: Any) -> bool:
    """A figure compare reads: a number ``median`` and a ``ci95`` of two numbers."""
    values = [fig.get("median"), *(fig.get("ci95") or [])] if isinstance(fig, dict) else []
    return len(values) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def compare(old_path: Path, results: dict[str, Any]) -> str:
    """The figures of ``results`` whose 95% interval does not overlap the same figure's in an earlier run."""
    try:
        old = read_results(old_path)
    except ArgumentError as e:
        return str(e)
    before, now = _figures(old), _figures(results)
    warning = _features_warning(old, results)
    changed = [
        {"model": k[0], "threads": k[1], "figure": k[2], "before": fmt(before[k]), "now": fmt(now[k]),
         "change": f"{now[k]['median'] / before[k]['median'] - 1:+.0%}"}
        for k in now if k in before
        and (now[k]["ci95"][0] > before[k]["ci95"][1] or now[k]["ci95"][1] < before[k]["ci95"][0])
    ]
    if not changed:
        return f"{warning}compared with {old_path}: no figure changed beyond its interval ({len(set(now) & set(before))} compared)"
    return f"{warning}compared with {old_path}: changed beyond the intervals\n\n" + format_table(changed, list(changed[0]))


def _features_warning(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A warning line when the two runs' CPUs differ in instruction-set features (or one did not record them):
    then int8 and bf16 ran other kernels, and a change says more about the machine than about the code."""
    before, now = (r.get("environment", {}).get("cpu_features") for r in (old, new))
    if before == now:
        return ""
    differ = sorted(k for k in set(before or {}) | set(now or {}) if (before or {}).get(k) != (now or {}).get(k))
    said = f"they differ in {', '.join(differ)}" if before and now else "one run did not record them"
    return (f"warning: the CPUs' instruction-set features differ ({said}: {features_line(old.get('environment', {}))} "
            f"then, {features_line(new.get('environment', {}))} now); int8 and bf16 figures are not comparable\n")
