"""The 8-candidate GPT-2-shaped sweep of `test_sweep.py` through `--interp-ray` (the Python API's `ray=`, the
plugin's code) on a Ray cluster started on this machine with 1 and with 2 worker nodes of one CPU each,
against the same sweep run locally at one thread, timed round by round alternately. The model is the
driver's in-memory one: it travels to the workers through Ray's object store, as it would from a notebook.

Recorded in extra_info: each cluster's median and its speedup over the local run, the ideal speedup (the
number of worker nodes), and Ray's own per-task costs with warm workers, in milliseconds: submit to start
(the driver's submission to the task's first line on the worker) and result transfer (the task's return to
the driver's receipt, the least over the tasks, since the driver may be busy when a result lands).

With --benchmark-disable (CI's smoke run): 2 candidates of 1,024 features, 1 worker node.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .test_sweep import CANDIDATES, CASES, WIDTH, sweep_inputs
from .timing import BenchEnv, benchmark_median, synced


def start_cluster(workers: int) -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_on_a_ray_cluster(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, tmp_path: Path, workers: int) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'interp-tests[ray]'")
    import torch

    import interp_tests

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    if smoke and workers > 1:
        pytest.skip("the smoke run checks one worker node")
    n, width, n_cases = (2, 1024, 2) if smoke else (CANDIDATES, WIDTH, CASES)
    model, paths, claims, _ = sweep_inputs(tmp_path, n, width, n_cases)
    cluster = start_cluster(workers)
    runs: list[Any] = []
    found: dict[str, Any] = {}
    local_times: list[float] = []
    threads = torch.get_num_threads()
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)  # warm workers across rounds

        def on_cluster() -> None:
            found["ray"] = interp_tests.evaluate(claims, saes=paths, model=model, dtype="float32", ray=cluster.address)
            runs.append(found["ray"])

        def local() -> None:  # the baseline, timed in each round next to the cluster's run
            torch.set_num_threads(1)
            start = time.perf_counter()
            found["local"] = interp_tests.evaluate(claims, saes=paths, model=model, dtype="float32")
            local_times.append(time.perf_counter() - start)
            torch.set_num_threads(threads)

        on_cluster()  # warm-up: the workers start and import torch, TransformerLens and SAELens
        benchmark.pedantic(synced(on_cluster, "cpu"), setup=local, rounds=1 if smoke else bench_env.rounds, warmup_rounds=0)
    finally:
        ray.shutdown()
        cluster.shutdown()
    from ..report.document import without_timings

    assert without_timings(found["ray"].document["cases"]) == without_timings(found["local"].document["cases"])  # the same results
    timed = [t for run in runs[1:] for t in run.tasks]  # the rounds after the warm-up
    info: dict[str, Any] = {"candidates": n, "d_sae": width, "cases": n_cases, "worker_nodes": workers, "cpus_per_task": 1, "tasks": len(runs[-1].tasks),
                            "ideal_speedup": float(min(workers, n))}
    if timed:
        starts = sorted(1000 * t["submit_to_start_s"] for t in timed)
        info |= {"submit_to_start_ms_median": starts[len(starts) // 2], "result_transfer_ms_min": min(1000 * t["result_transfer_s"] for t in timed)}
    median = benchmark_median(benchmark)
    if median and local_times:
        local_s = sorted(local_times)[len(local_times) // 2]
        info |= {"median_s": median, "local_median_s": local_s, "speedup_over_local": local_s / median}
    benchmark.extra_info.update(info)
