"""Time probekit's streaming SVCCA against a direct numpy SVD recipe.

The direct recipe is google/svcca's tutorial: centre, thin SVD of each side,
keep the top k singular directions (99% of the sum of singular values), then
CCA of the reduced sets from their covariance blocks. Inputs: two independent
random 20000 x 768 float64 matrices (one BERT-base layer pair at 20k tokens).

Each implementation runs in its own subprocess so that its peak memory is
measured alone: the peak resident set size during the computation minus the
resident size with the inputs already loaded.

    python benchmarks/bench_svcca.py [--rows 20000] [--width 768] [--repeats 3] [--device cuda]
    python benchmarks/bench_svcca.py --decompositions     # where the d x d eigh is fastest
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLD = 0.99


def make_inputs(rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, width)), rng.standard_normal((rows, width))


def direct_svcca(x: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
    reduced, ks = [], []
    for a in (x, y):
        centred = a - a.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        ratio = np.cumsum(s) / s.sum()
        k = int(np.argmax(ratio >= THRESHOLD)) + 1
        reduced.append(centred @ vt[:k].T)
        ks.append(k)
    rx, ry = reduced
    kx = rx.shape[1]
    cov = np.cov(np.concatenate([rx, ry], axis=1), rowvar=False)
    cxx, cyy, cxy = cov[:kx, :kx], cov[kx:, kx:], cov[:kx, kx:]

    def inverse_sqrt(c: np.ndarray) -> np.ndarray:
        lam, vec = np.linalg.eigh(c)
        return (vec / np.sqrt(lam)) @ vec.T

    rho = np.linalg.svd(inverse_sqrt(cxx) @ cxy @ inverse_sqrt(cyy), compute_uv=False)
    return 1.0 - float(np.clip(rho, 0.0, 1.0).mean()), ks[0], ks[1]


def probekit_svcca(x, y) -> tuple[float, int, int]:
    from probekit.metrics.functional import svcca

    result = svcca(x, y, threshold=THRESHOLD)
    return result.distance, result.k_x, result.k_y


def probekit_svcca_cuda(x: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
    """The moments streamed on the GPU (float64), the d x d decompositions where probekit puts them."""
    import torch

    result = probekit_svcca(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    torch.cuda.synchronize()
    return result


def time_decompositions(widths=(384, 768, 1024), repeats: int = 5) -> None:
    """float64 eigh of a d x d covariance: CPU on 1 thread and on all, and the GPU when there is one."""
    import torch

    threads = torch.get_num_threads()
    for d in widths:
        a = torch.randn(4 * d, d, dtype=torch.float64)
        cov = a.T @ a
        cases = {"cpu, 1 thread": (cov, 1), f"cpu, {threads} threads": (cov, threads)}
        if torch.cuda.is_available():
            cases["cuda"] = (cov.cuda(), threads)
        timings = []
        for label, (matrix, n_threads) in cases.items():
            torch.set_num_threads(n_threads)
            torch.linalg.eigh(matrix)  # warm-up (and cuSOLVER's initialisation)
            start = time.perf_counter()
            for _ in range(repeats):
                torch.linalg.eigh(matrix)
            if matrix.is_cuda:
                torch.cuda.synchronize()
            timings.append(f"{label} {(time.perf_counter() - start) / repeats * 1e3:.1f} ms")
        torch.set_num_threads(threads)
        print(f"eigh float64 d = {d}: " + ", ".join(timings))


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak covers the computation only.
    Path("/proc/self/clear_refs").write_text("5")


def child(impl: str, rows: int, width: int, repeats: int) -> None:
    import torch  # noqa: F401  (imported before measuring so its import is not counted)

    x, y = make_inputs(rows, width)
    run = {"probekit": probekit_svcca, "direct": direct_svcca, "probekit-cuda": probekit_svcca_cuda}[impl]
    base = resident_kib()
    reset_peak()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        distance, kx, ky = run(x, y)
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "seconds": statistics.median(times),
        "all_seconds": times,
        "extra_mib": (peak_kib() - base) / 1024,
        "distance": distance,
        "k_x": kx,
        "k_y": ky,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cuda adds probekit with the moments on the GPU")
    parser.add_argument("--decompositions", action="store_true", help="time the d x d eigh on CPU and GPU and stop")
    parser.add_argument("--child", choices=["probekit", "direct", "probekit-cuda"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.width, args.repeats)
        return
    if args.decompositions:
        time_decompositions()
        return

    root = Path(__file__).resolve().parent.parent
    results = {}
    for impl in ("probekit", "direct", *(["probekit-cuda"] if args.device == "cuda" else [])):
        out = subprocess.run(
            [sys.executable, __file__, "--child", impl, "--rows", str(args.rows),
             "--width", str(args.width), "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True, cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        results[impl] = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"inputs: two random {args.rows} x {args.width} float64 matrices; median of "
          f"{args.repeats} runs each; k: {THRESHOLD} of the sum of singular values")
    for impl, r in results.items():
        runs = ", ".join(f"{t:.2f}" for t in r["all_seconds"])
        print(f"{impl:>9}: {r['seconds']:7.3f} s (runs {runs})  "
              f"peak extra memory {r['extra_mib']:7.1f} MiB  "
              f"distance {r['distance']:.10f}  k_x {r['k_x']}  k_y {r['k_y']}")
    p, d = results["probekit"], results["direct"]
    print(f"wall-time ratio direct / probekit: {d['seconds'] / p['seconds']:.1f}x; "
          f"memory ratio: {d['extra_mib'] / max(p['extra_mib'], 1e-9):.1f}x; "
          f"|distance difference|: {abs(d['distance'] - p['distance']):.2e}")


if __name__ == "__main__":
    main()
