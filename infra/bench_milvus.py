"""Benchmark the installed milvus-lite: insert throughput and k-NN search latency.

    python -m infra.bench_milvus --n 100000 --dim 200 --queries 200 --out bench/out/milvus.json

Starts its own Milvus Lite server on a free loopback port (the 2.5.x native binary, or the
3.x pure-Python gRPC server, whichever is installed -- see infra.milvus_lite), inserts ``n``
random unit vectors into a collection keyed by VARCHAR ids like the real one, and for each
index type measures insert rows/s, index build + load time, search latency (p50/p95/mean,
single query, k=50, one client) and recall@k against exact numpy search. Written to compare
milvus-lite 2.5.1 (pinned) with 3.x; run it once in each environment.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from infra.milvus_lite import MilvusLiteServer, milvus_lite_version

log = logging.getLogger(__name__)


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _pk(hit: Any) -> str:
    # pymilvus 2.x puts the primary key under "id"; 3.x under the field's own name.
    keys = set(hit.keys())
    return str(hit["id"] if "id" in keys else hit["track_id"])


def _index_params(client: Any, index_type: str, nlist: int) -> Any:
    params = client.prepare_index_params()
    params.add_index(
        field_name="embedding",
        index_type=index_type,
        metric_type="COSINE",
        params={"nlist": nlist} if index_type == "IVF_FLAT" else {},
    )
    return params


def bench_index(
    client: Any,
    *,
    index_type: str,
    data: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    sources: npt.NDArray[np.int64],
    k: int,
    batch: int,
    nlist: int,
    nprobe: int,
    search_budget_s: float,
) -> dict[str, Any]:
    """Insert ``data`` into a fresh collection with ``index_type`` and time searches."""
    from pymilvus import DataType, MilvusClient

    n, dim = data.shape
    name = f"bench_{index_type.lower()}_{n}"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("track_id", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("artist_id", DataType.VARCHAR, max_length=128)
    schema.add_field("uploaded_at", DataType.INT64)
    # Created with its index up front, as TrackStore does; rows then stream in.
    client.create_collection(
        name,
        schema=schema,
        index_params=_index_params(client, index_type, nlist),
        consistency_level="Strong",
    )

    t0 = time.perf_counter()
    for start in range(0, n, batch):
        chunk = data[start : start + batch]
        rows = [
            {
                "track_id": f"t{start + i}",
                "embedding": vec,
                "artist_id": f"a{(start + i) % 5000}",
                "uploaded_at": start + i,
            }
            for i, vec in enumerate(chunk.tolist())
        ]
        client.insert(name, rows)
    insert_s = time.perf_counter() - t0

    # Flush seals the growing segments so the index is built over them; without it a
    # fresh Lite collection is searched brute force over growing data.
    t1 = time.perf_counter()
    client.flush(name)
    flush_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    # No release/reload: milvus-lite 3.2.2 then fails reading segment files it is still
    # writing ("file seems not fully written"); load of a loaded collection is a no-op.
    client.load_collection(name)
    load_s = time.perf_counter() - t2

    sp: dict[str, Any] = {"metric_type": "COSINE"}
    if index_type == "IVF_FLAT":
        sp["params"] = {"nprobe": nprobe}
    for q in queries[:3]:  # warm-up: first searches load the index and caches
        client.search(name, data=[q.tolist()], limit=k, search_params=sp, anns_field="embedding")

    lat: list[float] = []
    recalls: list[float] = []
    self_hits: list[bool] = []
    deadline = time.perf_counter() + search_budget_s
    for qi, q in enumerate(queries):
        ts = time.perf_counter()
        res = client.search(
            name,
            data=[q.tolist()],
            limit=k,
            search_params=sp,
            anns_field="embedding",
            consistency_level="Strong",
        )
        lat.append(time.perf_counter() - ts)
        got = {int(_pk(h)[1:]) for h in res[0]}
        recalls.append(len(got & set(truth[qi].tolist())) / k)
        self_hits.append(int(sources[qi]) in got)
        if time.perf_counter() > deadline:
            log.warning(
                "%s: search budget of %.0f s used up after %d queries",
                index_type,
                search_budget_s,
                qi + 1,
            )
            break

    # Filtered search: what TrackStore.search(exclude=...) sends (200 excluded ids).
    excl = "track_id not in [" + ",".join(f'"t{i}"' for i in range(200)) + "]"
    flat: list[float] = []
    for q in queries[: min(20, len(lat))]:
        ts = time.perf_counter()
        client.search(
            name, data=[q.tolist()], limit=k, filter=excl, search_params=sp, anns_field="embedding"
        )
        flat.append(time.perf_counter() - ts)

    ms = np.asarray(lat) * 1000.0
    fms = np.asarray(flat) * 1000.0
    client.drop_collection(name)
    return {
        "index_type": index_type,
        "n": n,
        "dim": dim,
        "insert_s": round(insert_s, 3),
        "insert_rows_per_s": round(n / insert_s, 1),
        "flush_s": round(flush_s, 3),
        "load_s": round(load_s, 3),
        "queries": len(lat),
        "k": k,
        "search_ms_p50": round(float(np.percentile(ms, 50)), 3),
        "search_ms_p95": round(float(np.percentile(ms, 95)), 3),
        "search_ms_p99": round(float(np.percentile(ms, 99)), 3),
        "search_ms_mean": round(float(ms.mean()), 3),
        "filtered_search_ms_p50": round(float(np.percentile(fms, 50)), 3) if len(fms) else None,
        "recall_at_k": round(float(np.mean(recalls)), 4),
        "source_in_top_k": round(float(np.mean(self_hits)), 4),
        "nlist": nlist if index_type == "IVF_FLAT" else None,
        "nprobe": nprobe if index_type == "IVF_FLAT" else None,
    }


def make_data(rng: np.random.Generator, n: int, dim: int, clusters: int) -> npt.NDArray[np.float32]:
    """``n`` unit vectors; clustered unless ``clusters`` is 0.

    Uniform random 200-d vectors have no neighbourhood structure (every pair is ~90 degrees
    apart), which is unlike audio embeddings and makes IVF recall meaningless, so by default
    points are drawn around ``clusters`` random centres (genre/style-like groups).
    """
    if clusters <= 0:
        return _unit(rng.standard_normal((n, dim), dtype=np.float32))
    centres = _unit(rng.standard_normal((clusters, dim), dtype=np.float32))
    which = rng.integers(0, clusters, size=n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
    return _unit(centres[which] + noise)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start a server, benchmark every index type, return the report."""
    from pymilvus import MilvusClient

    rng = np.random.default_rng(args.seed)
    data = make_data(rng, args.n, args.dim, args.clusters)
    # Queries near stored points (like "tracks similar to this one") rather than uniform
    # noise, so the k nearest neighbours are meaningful and recall is informative.
    picks = rng.integers(0, args.n, size=args.queries)
    noise = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries = _unit(data[picks] + 0.5 * noise / np.sqrt(args.dim))
    truth = np.argsort(-(queries @ data.T), axis=1)[:, : args.k]  # exact cosine top-k

    workdir = Path(tempfile.mkdtemp(prefix="bench_milvus_"))
    results: list[dict[str, Any]] = []
    try:
        with MilvusLiteServer(
            db_path=workdir / "bench.db", log_path=workdir / "milvus.log"
        ) as server:
            client = MilvusClient(uri=server.uri, timeout=600)
            try:
                for index_type in args.index:
                    log.info("benchmarking %s at n=%d dim=%d", index_type, args.n, args.dim)
                    results.append(
                        bench_index(
                            client,
                            index_type=index_type,
                            data=data,
                            queries=queries,
                            truth=truth,
                            sources=picks,
                            k=args.k,
                            batch=args.batch,
                            nlist=args.nlist,
                            nprobe=args.nprobe,
                            search_budget_s=args.search_budget_s,
                        )
                    )
            finally:
                client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "milvus_lite": milvus_lite_version(),
        "pymilvus": _version("pymilvus"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mode": "tcp-server",
        "results": results,
    }


def _table(report: dict[str, Any]) -> str:
    head = (
        f"milvus-lite {report['milvus_lite']}  pymilvus {report['pymilvus']}  "
        f"cpus {report['cpus']}\n"
        f"{'index':<9} {'n':>7} {'dim':>4} {'ins rows/s':>10} {'flush s':>8} {'load s':>7} "
        f"{'q':>4} {'p50 ms':>8} {'p95 ms':>8} {'filt p50':>9} {'recall':>7} {'src@k':>6}"
    )
    lines = [head]
    for r in report["results"]:
        filt = r["filtered_search_ms_p50"]
        lines.append(
            f"{r['index_type']:<9} {r['n']:>7} {r['dim']:>4} {r['insert_rows_per_s']:>10.0f} "
            f"{r['flush_s']:>8.2f} {r['load_s']:>7.2f} {r['queries']:>4} "
            f"{r['search_ms_p50']:>8.2f} {r['search_ms_p95']:>8.2f} "
            f"{(filt if filt is not None else float('nan')):>9.2f} {r['recall_at_k']:>7.3f} "
            f"{r['source_in_top_k']:>6.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m infra.bench_milvus", description=__doc__)
    p.add_argument("--n", type=int, default=100_000, help="vectors to insert")
    p.add_argument("--dim", type=int, default=200, help="vector width")
    p.add_argument("--queries", type=int, default=200, help="timed single-vector searches")
    p.add_argument("--k", type=int, default=50, help="neighbours per search")
    p.add_argument("--batch", type=int, default=5_000, help="rows per insert call")
    p.add_argument("--index", nargs="+", default=["FLAT", "IVF_FLAT"], help="index types")
    p.add_argument("--nlist", type=int, default=1024, help="IVF_FLAT clusters")
    p.add_argument("--nprobe", type=int, default=32, help="IVF_FLAT clusters searched")
    p.add_argument(
        "--search-budget-s",
        type=float,
        default=180.0,
        help="stop timing searches of one index after this long (slow engines)",
    )
    p.add_argument(
        "--clusters", type=int, default=1000, help="cluster centres of the data (0 = uniform)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    t0 = time.perf_counter()
    report = run(args)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["args"] = {k: v for k, v in vars(args).items() if k != "out"}
    print(_table(report))  # the benchmark's output is the point: print, not log
    print(f"total {report['total_s']} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
