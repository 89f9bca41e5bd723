"""Exact k-nearest-neighbour search with numpy and FAISS IndexFlatL2 on the
same problem as `fedsynth bench knn`: uniform random float32 rows in [0, 1),
GFLOP/s counted as 2 * queries * references * dim.

numpy uses the same blocked formula, ||q||^2 + ||r||^2 - 2 q.r, with
argpartition for the top k, so both sides do one matrix multiply of the
same size.
"""

import argparse
import time

import numpy as np


def numpy_knn(queries, references, k, block=2048):
    """Returns (distances, indices) of the k nearest references per query."""
    ref_norms = np.einsum("ij,ij->i", references, references)
    out_d = np.empty((len(queries), k), dtype=np.float32)
    out_i = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        q_norms = np.einsum("ij,ij->i", q, q)
        d2 = q_norms[:, None] + ref_norms[None, :] - 2.0 * (q @ references.T)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        rows = np.arange(len(q))[:, None]
        order = np.argsort(d2[rows, part], axis=1)
        out_i[start : start + block] = part[rows, order]
        out_d[start : start + block] = np.sqrt(np.maximum(d2[rows, out_i[start : start + block]], 0))
    return out_d, out_i


def best_time(run, repeat):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=10000)
    parser.add_argument("--references", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    queries = rng.random((args.queries, args.dim), dtype=np.float32)
    references = rng.random((args.references, args.dim), dtype=np.float32)
    flops = 2.0 * args.queries * args.references * args.dim

    numpy_knn(queries[:16], references, args.k)
    seconds = best_time(lambda: numpy_knn(queries, references, args.k), args.repeat)
    print(f"numpy {np.__version__}: {seconds:.3f} s, {flops / seconds / 1e9:.1f} GFLOP/s")

    try:
        import faiss
    except ImportError:
        print("faiss: not installed, skipped")
        return
    if args.threads > 0:
        faiss.omp_set_num_threads(args.threads)
    index = faiss.IndexFlatL2(args.dim)
    index.add(references)
    index.search(queries[:16], args.k)
    seconds = best_time(lambda: index.search(queries, args.k), args.repeat)
    print(f"faiss {faiss.__version__}: {seconds:.3f} s, {flops / seconds / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
