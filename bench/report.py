"""Turn a pytest-benchmark JSON file into a Markdown table and a plot.

Usage::

    python -m pytest bench/ --benchmark-json out.json
    python bench/report.py out.json [--out DIR]

Writes ``DIR/report.md`` (workload x dtype x path: microseconds per sample,
samples per second, speed-up over the NumPy engine; compile times) and
``DIR/speedup_vs_width.png`` (speed-up and samples per second against hidden
width), and prints where it wrote them. DIR defaults to ``bench/out``.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

PATH_ORDER = ("notebook", "numpy", "numba-layer", "numba-onepass", "numba-blocked",
              "numba-fused", "stream")
PATH_LABEL = {
    "notebook": "notebook 002 as written",
    "numpy": "NumPy engine",
    "numba-layer": "Numba, layer by layer",
    "numba-onepass": "Numba, fused one-pass",
    "numba-blocked": "Numba, fused blocked",
    "numba-fused": "Numba, fused (default)",
    "stream": "stream pass (memory floor)",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def speed_rows(doc):
    """Rows of the main table, grouped by workload/mode/dtype, paths in order."""
    groups = defaultdict(dict)
    for b in doc["benchmarks"]:
        info = b.get("extra_info", {})
        if "workload" in info and "path" in info:
            key = (info["workload"], info["name"], info["mode"], info["dtype"])
            groups[key][info["path"]] = (b["stats"]["median"], info)
    def us(entry):
        return entry[0] / entry[1]["samples_per_call"] * 1e6 if entry else None

    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[2] != "per-sample", k[2], k[3] != "float64")):
        paths = groups[key]
        base, stream, onepass = (us(paths.get(p)) for p in ("numpy", "stream", "numba-onepass"))
        # The default path's ratio to the floor as measured next to it (the
        # stream case times both, interleaved), else from the two rows.
        beside = paths["stream"][1].get("step_over_stream") if "stream" in paths else None
        for p in sorted(paths, key=PATH_ORDER.index):
            t = us(paths[p])
            info = paths[p][1]
            floor = t / stream if stream and p != "stream" else None
            if p == "numba-fused" and beside:
                floor = beside
            rows.append({
                "workload": f"{key[0]} {key[1]}", "mode": key[2], "dtype": key[3], "path": p,
                "us": t, "sps": 1e6 / t, "speedup": base / t if base else None,
                "stream": floor,
                "onepass": onepass / t if onepass and p in ("numba-blocked", "numba-fused")
                else None,
                "gflops": info.get("gflops"), "data": info.get("data", ""),
                "block": info.get("block"),
            })
    return rows


def fmt(x, digits=3):
    if x is None:
        return ""
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def markdown(doc):
    rows = speed_rows(doc)
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {}).get("brand_raw") or m.get("processor", "?")
    versions = m.get("versions", {})
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture') or '?'} kernels, "
        f"{b.get('num_threads')} thread(s), {Path(b.get('filepath', '')).name})"
        for b in m.get("blas", []))
    env = ", ".join(f"{k}={v}" for k, v in m.get("blas_env", {}).items()) or "none set"
    out = [
        f"Machine: {cpu}, {m.get('cpu_count', '?')} cores ({m.get('cpu_flags', '?')}); Python "
        f"{m.get('python_version', '?')}, numpy {versions.get('numpy', '?')}, numba "
        f"{versions.get('numba', '?')}, fastmlp {versions.get('fastmlp', '?')}; BLAS threads "
        f"pinned to {m.get('blas_threads', '?')}. BLAS: {blas or '?'}; OpenBLAS environment: "
        f"{env}; load average at start {m.get('load_average', '?')}."
        f" Run {doc.get('datetime', '?')[:19]}. Medians of 5 timed calls, all paths in one"
        " warm process after a warm-up call; the default path's ratio to the stream pass is"
        " measured with the two interleaved.",
        "",
        "| workload | mode | dtype | path | µs / sample | samples / s | speed-up vs NumPy "
        "| time / stream pass | speed-up vs one-pass | GFLOP/s* |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = PATH_LABEL[r["path"]]
        if r["path"] in ("numba-blocked", "numba-fused") and r["mode"] == "per-sample":
            label += f" (k={r['block']})" if r["block"] else " (one-pass)"
        speed = f"**{r['speedup']:.1f}x**" if r["path"] == "numba-fused" and r["speedup"] else (
            f"{r['speedup']:.2f}x" if r["speedup"] else "")
        ratio = lambda x: f"{x:.2f}" if x else ""  # noqa: E731
        out.append(f"| {r['workload']} | {r['mode']} | {r['dtype']} | {label} | {fmt(r['us'])} "
                   f"| {fmt(r['sps'])} | {speed} | {ratio(r['stream'])} | {ratio(r['onepass'])} "
                   f"| {fmt(r['gflops'])} |")
    sources = sorted({f"{r['workload']}: {r['data']}" for r in rows if r["path"] != "stream"})
    out += ["", "Data: " + "; ".join(sources) + ".",
            "*Dense-equivalent GFLOP/s: training FLOPs of a dense step (forward, weight "
            "gradient, input gradient) per second; the fused loops skip rows of zero input, "
            "so on sparse data they can exceed what they compute."]
    digits = [b for b in doc["benchmarks"] if "library" in b.get("extra_info", {})]
    if digits:
        out += ["", "| digits, MLPClassifier (100,), SGD + momentum, 100 epochs | fit time "
                "| test accuracy |", "|---|---:|---:|"]
        for b in digits:
            i = b["extra_info"]
            out.append(f"| {i['library']} | {b['stats']['median']:.3f} s | {i['accuracy']:.4f} |")
    peer_rows = [b["extra_info"] for b in doc["benchmarks"] if "peer" in b.get("extra_info", {})]
    if peer_rows:
        out += ["", "| peers (interleaved in one process, medians) | dtype | peer | fastmlp µs "
                "| peer µs | peer / fastmlp | rounds' own ratios: quartiles | rounds "
                "| cores busy, fastmlp / peer |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for i in sorted(peer_rows, key=lambda i: (i["workload"], i["mode"], i["dtype"] != "float64",
                                                  i["peer"])):
            q = i.get("paired_ratio")
            paired = f"{q[0]:.2f} / **{q[1]:.2f}** / {q[2]:.2f}" if q else ""
            out.append(f"| {i['workload']} {i['name']} {i['mode']} | {i['dtype']} | {i['peer']} "
                       f"{i.get('peer_version', '')} | {fmt(i['fastmlp_us'])} | "
                       f"{fmt(i['peer_us'])} | **{i['ratio']:.2f}x** | {paired} | "
                       f"{i.get('rounds', '')} | "
                       f"{i.get('fastmlp_cores', 0):.2f} / {i.get('peer_cores', 0):.2f} |")
    compile_rows = [b for b in doc["benchmarks"] if "cache" in b.get("extra_info", {})]
    if compile_rows:
        out += ["", "| compile (notebook-003 network, fresh process) | dtype | import fastmlp "
                "| first sgd call |", "|---|---|---:|---:|"]
        for b in sorted(compile_rows, key=lambda b: (b["extra_info"]["dtype"],
                                                     b["extra_info"]["cache"])):
            i = b["extra_info"]
            out.append(f"| {i['cache']} cache | {i['dtype']} | {i.get('import_fastmlp', 0):.2f} s "
                       f"| {i.get('first_sgd', 0):.2f} s |")
    return "\n".join(out) + "\n"


def width_plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = defaultdict(dict)
    for b in doc["benchmarks"]:
        info = b.get("extra_info", {})
        if "width" in info:
            data[info["path"]][info["width"]] = info["samples_per_call"] / b["stats"]["median"]
    if not data.get("numpy") or not data.get("numba-fused"):
        return None
    widths = sorted(set(data["numpy"]) & set(data["numba-fused"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for p, style in (("numpy", "o-"), ("numba-fused", "s-")):
        ax1.plot(widths, [data[p][w] for w in widths], style, label=PATH_LABEL[p])
    ax1.set(xscale="log", yscale="log", xlabel="hidden width", ylabel="samples / s",
            title="Per-sample SGD, 784-w-10 ReLU (float64)")
    ax1.set_xticks(widths, [str(w) for w in widths])
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    ax2.plot(widths, [data["numba-fused"][w] / data["numpy"][w] for w in widths], "s-", color="C2")
    ax2.set(xscale="log", xlabel="hidden width", ylabel="speed-up (fused / NumPy engine)",
            title="Speed-up of the fused loop")
    ax2.set_xticks(widths, [str(w) for w in widths])
    ax2.set_ylim(bottom=0)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="file written by --benchmark-json")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out",
                        help="folder for report.md and the plot (default: bench/out)")
    args = parser.parse_args(argv)
    doc = load(args.json)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "report.md"
    md.write_text(markdown(doc))
    print(f"wrote {md}")
    png = width_plot(doc, args.out / "speedup_vs_width.png")
    if png:
        print(f"wrote {png}")
    else:
        print("no width benchmarks in this file: no plot")


if __name__ == "__main__":
    main()
