"""polyattn from Python against PyTorch, in one process, on the same thread count.

Compares, for f32 inputs [batch·heads, n, d]:
  * softmax: polyattn.attention(kernel="softmax") vs torch.nn.functional.scaled_dot_product_attention;
  * polynomial β = 4: polyattn.attention vs the version a torch user writes by hand
    ((q @ kᵀ) ** 4, tril for causal, divide by the row sum, @ v; it holds n × n matrices, so it
    runs only while they fit in --max-dense-n);
and the Python-call overhead: polyattn.attention timed from Python against the engine alone
(timed inside Rust by polyattn._polyattn.time_engine) on the same arrays.

Run through `cargo xtask py-bench` (release build); `POLYATTN_VENV=<venv with torch>` adds torch.
Writes <out>/peers.json and prints a markdown table. Each timing warms up for --warmup-s seconds
first and reports the median (and min/max) of --repeat calls.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    p.add_argument("--batch-heads", type=int, default=8)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--overhead-repeat", type=int, default=21,
                   help="alternating Python/engine calls for the overhead (5 calls read ±4%%: the "
                        "engine's own spread)")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--max-dense-n", type=int, default=8192,
                   help="largest n for the hand-written torch version (it holds n × n matrices)")
    p.add_argument("--out", default="target/polyattn/python")
    return p.parse_args()


ARGS = parse()
# One pool of the requested size for both libraries, fixed before either starts its threads.
os.environ["RAYON_NUM_THREADS"] = str(ARGS.threads)
# torch's OpenMP workers otherwise spin after each call and take the cores from whatever runs
# next in the process (measured: polyattn calls right after torch ones ran up to 1.8× slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

import polyattn  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(ARGS.threads)
except ImportError:
    torch = None


def timed(fn):
    """Median, min, max seconds of --repeat calls after warming up for --warmup-s."""
    start = time.perf_counter()
    while time.perf_counter() - start < ARGS.warmup_s:
        fn()
    runs = []
    for _ in range(ARGS.repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), min(runs), max(runs)


def hand_written_poly(q, k, v, causal):
    w = (q @ k.transpose(-1, -2)) ** 4
    if causal:
        w = torch.tril(w)
    return (w / w.sum(-1, keepdim=True)) @ v


def overhead_at_4096(rng, bh, d):
    """Python call vs engine alone, alternating call by call (so drift hits both alike), before
    torch has run in the process."""
    n = 4096
    q, k, v = (rng.standard_normal((bh, n, d), dtype=np.float32) for _ in range(3))
    out = []
    for causal in (False, True):
        timed(lambda: polyattn.attention(q, k, v, degree=4, causal=causal))  # warm-up
        python, engine = [], []
        for _ in range(ARGS.overhead_repeat):
            t0 = time.perf_counter()
            polyattn.attention(q, k, v, degree=4, causal=causal)
            python.append(time.perf_counter() - t0)
            engine += polyattn._polyattn.time_engine(q, k, v, 1, degree=4, causal=causal)
        p, e = statistics.median(python), statistics.median(engine)
        out.append({"n": n, "causal": causal, "python_s": p, "engine_s": e,
                    "overhead": p / e - 1, "overhead_of_minima": min(python) / min(engine) - 1})
    return out


def main():
    rng = np.random.default_rng(0)
    bh, d = ARGS.batch_heads, ARGS.d
    overhead = overhead_at_4096(rng, bh, d)
    rows = []
    for n in ARGS.n:
        q, k, v = (rng.standard_normal((bh, n, d), dtype=np.float32) for _ in range(3))
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v)) if torch else (None,) * 3
        for causal in (False, True):
            cells = {}
            cells["polyattn softmax"] = timed(
                lambda: polyattn.attention(q, k, v, kernel="softmax", causal=causal))
            cells["polyattn poly4"] = timed(
                lambda: polyattn.attention(q, k, v, degree=4, causal=causal))
            if torch is not None:
                with torch.no_grad():
                    cells["torch sdpa"] = timed(
                        lambda: torch.nn.functional.scaled_dot_product_attention(
                            tq, tk, tv, is_causal=causal))
                    if n <= ARGS.max_dense_n:
                        cells["torch poly4 by hand"] = timed(
                            lambda: hand_written_poly(tq, tk, tv, causal))
            row = {"n": n, "causal": causal, "seconds": cells}
            if "torch sdpa" in cells:
                row["softmax_speedup_vs_sdpa"] = cells["torch sdpa"][0] / cells["polyattn softmax"][0]
            if "torch poly4 by hand" in cells:
                row["poly4_speedup_vs_torch_by_hand"] = (
                    cells["torch poly4 by hand"][0] / cells["polyattn poly4"][0])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    report = {
        "machine": {"cpu": cpu_model(), "threads": ARGS.threads,
                    "loadavg": os.getloadavg(), "python": platform.python_version(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "numpy": np.__version__},
        "torch": None if torch is None else {
            "version": torch.__version__,
            "blas": next((part.strip() for part in torch.__config__.show().split(",")
                          if "BLAS_INFO" in part), "BLAS_INFO=unknown").split("=")[-1],
            "threads": torch.get_num_threads(),
        },
        "batch_heads": bh, "d": d, "rows": rows, "overhead": overhead,
    }
    os.makedirs(ARGS.out, exist_ok=True)
    with open(os.path.join(ARGS.out, "peers.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(markdown(report))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(report):
    lines = [f"f32, batch×heads = {report['batch_heads']}, d = {report['d']}, "
             f"{report['machine']['threads']} threads; "
             + (f"torch {report['torch']['version']} ({report['torch']['blas']})"
                if report["torch"] else "torch not installed"),
             "", "| n | causal | polyattn softmax | torch SDPA | ratio | polyattn β=4 | "
             "torch β=4 by hand | ratio |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        s = r["seconds"]

        def ms(key):
            return f"{1e3 * s[key][0]:.1f} ms" if key in s else "—"

        lines.append(
            f"| {r['n']} | {r['causal']} | {ms('polyattn softmax')} | {ms('torch sdpa')} | "
            f"{r.get('softmax_speedup_vs_sdpa', float('nan')):.2f}× | {ms('polyattn poly4')} | "
            f"{ms('torch poly4 by hand')} | {r.get('poly4_speedup_vs_torch_by_hand', float('nan')):.2f}× |")
    lines.append("")
    for o in report["overhead"]:
        lines.append(f"Python-call overhead, β = 4, n = {o['n']}, causal = {o['causal']}: "
                     f"{100 * o['overhead']:+.2f}% of medians, "
                     f"{100 * o['overhead_of_minima']:+.2f}% of minima "
                     f"({1e3 * o['python_s']:.2f} ms from Python, "
                     f"{1e3 * o['engine_s']:.2f} ms engine alone)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
