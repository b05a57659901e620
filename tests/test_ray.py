"""--interp-ray on a real Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head without CPUs and two
worker nodes with one CPU each): the same JSON document as a local run, a node lost mid-run, retries
exhausted, a wrong address, Ray missing, xdist refused, and Ray never imported without the option.

Every driver runs with a Ray authentication token at hand (RAY_AUTH_TOKEN_PATH), as a machine where any
`ray.init()` ever ran has one (~/.ray/auth_token): the clusters of `ray.cluster_utils` use no token, and a
driver that turned token authentication on for them could not be reached by their nodes. A head started by
`ray start` with token authentication on is joined by HOST:PORT as well."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import checkpoints
from .helpers import BUNDLED_TARGET
from .test_sweeps import SWEEP

pytestmark = pytest.mark.slow  # starts Ray nodes and interpreters

ROOT = Path(__file__).resolve().parents[1]
UNIT = "ray::interp-tests-unit"  # the process title of a task's worker


TOKEN_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"interp-tests-ray-token-{os.getpid()}"


def token_path() -> Path:
    """A Ray authentication token for the drivers (written once per test process)."""
    path = TOKEN_DIR / "auth_token"
    if not path.exists():
        TOKEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
    return path


def driver_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAY_AUTH_TOKEN_PATH": str(token_path()), **extra}


def start_cluster(workers: int = 2) -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(workers)]
    cluster.wait_for_nodes()
    cluster.workers = nodes  # type: ignore[attr-defined]
    return cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    c = start_cluster()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's repository: the bundled case files, a sweep's case file with its reference baseline, and four
    candidates under runs/."""
    root = tmp_path_factory.mktemp("ray-repo")
    (root / "bundled").mkdir()
    for name in ("tiny-stdlib.yaml", "tiny-stdlib-transcoder.yaml"):
        shutil.copy(ROOT / "cases" / name, root / "bundled" / name)
    (root / "sweep").mkdir()
    (root / "sweep" / "claims.yaml").write_text(BUNDLED_TARGET + SWEEP)
    for name, change in (("copy", checkpoints.identical), ("permuted", checkpoints.permuted), ("noisy", checkpoints.noisy), ("zeroed", checkpoints.zeroed(692))):
        checkpoints.save_variant(root / "runs" / name / "final", change)
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def run(repo: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=repo, capture_output=True, text=True, timeout=timeout,
        env=driver_env(**env),
    )


def document(path: Path) -> Any:
    from interp_tests.report.document import without_timings

    doc = without_timings(json.loads(path.read_text()))
    doc["run"]["options"].pop("ray")
    return doc


RUNS = {"bundled": ("bundled/",), "sweep": ("sweep/", "--interp-sae=runs/*/final")}
LOCAL: dict[str, Any] = {}


def local_document(repo: Path, which: str) -> Any:
    """The local run's document (one torch thread, as each Ray task runs), computed once per module."""
    if which not in LOCAL:
        out = repo / f"local-{which}.json"
        r = run(repo, *RUNS[which], f"--interp-json={out}")
        assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
        LOCAL[which] = document(out)
    return LOCAL[which]


@pytest.mark.parametrize("which", ["bundled", "sweep"])
def test_a_run_through_ray_gives_the_local_runs_document(cluster: Any, repo: Path, which: str) -> None:
    out = repo / f"ray-{which}.json"
    r = run(repo, *RUNS[which], f"--interp-json={out}", f"--interp-ray={cluster.address}")
    assert r.returncode in (0, 1) and "Traceback" not in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    assert document(out) == local_document(repo, which)
    assert "interp-tests: ray: task 1/" in r.stdout  # a progress line per finished task
    if which == "sweep":  # four candidates over two one-CPU nodes: two tasks, one per node
        assert "interp-tests: ray: 2 tasks for 8 cases on 2 task slots" in r.stdout, r.stdout[-3000:]
        nodes = {line.split(" on node ")[1].split(" ")[0] for line in r.stdout.splitlines() if " done (" in line}
        assert len(nodes) >= 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TWO_JOINS = """
import json, sys
import interp_tests
first = interp_tests.evaluate(sys.argv[1], ray=sys.argv[2], offline=True)
second = interp_tests.evaluate(sys.argv[1], ray=sys.argv[3], offline=True)
print([str(f) for f in second.failures()][:2], file=sys.stderr)
print(json.dumps([first.document["run"]["passed"], second.document["run"]["passed"], [p for p in first.problems + second.problems]]))
"""


def test_a_head_with_token_authentication_is_joined_by_host_and_port(cluster: Any, repo: Path, tmp_path: Path) -> None:
    """`ray start --head` with the token on (as it does whenever ~/.ray/auth_token exists). Given HOST:PORT,
    the driver asks the cluster (in milliseconds) whether it wants the token and sends the one at hand: the
    tasks run and the document is the local run's. Without a token at hand: one usage line. One process that
    joins this cluster and then one without authentication (`cluster`) reaches both."""
    from ray.util import get_node_ip_address

    from interp_tests.run.ray_connect import cluster_wants_token, host_port

    port = free_port()
    env = driver_env(RAY_AUTH_MODE="token")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths live under it
    head = subprocess.Popen(
        [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--block", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        address = f"{get_node_ip_address()}:{port}"
        deadline = time.monotonic() + 90
        while not (Path(temp) / "session_latest" / "sockets" / "raylet").exists():  # the head's raylet is up
            assert time.monotonic() < deadline and head.poll() is None, "ray start --head did not come up"
            time.sleep(0.5)
        time.sleep(1)  # and registered with its GCS
        start = time.monotonic()
        assert cluster_wants_token(host_port(address)) is True  # type: ignore[arg-type]
        assert cluster_wants_token(host_port(cluster.address)) is False  # type: ignore[arg-type]
        assert time.monotonic() - start < 5  # two requests, not Ray's 20 s of connection retries

        out = repo / "ray-token.json"
        r = run(repo, *RUNS["bundled"], f"--interp-json={out}", f"--interp-ray={address}")
        assert r.returncode in (0, 1) and "Traceback" not in r.stdout + r.stderr and "FAILED (" not in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
        assert document(out) == local_document(repo, "bundled")

        home = tmp_path / "home"  # no ~/.ray/auth_token, no RAY_AUTH_TOKEN(_PATH)
        home.mkdir()
        bare = {k: v for k, v in driver_env(HOME=str(home)).items() if k != "RAY_AUTH_TOKEN_PATH"}
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *RUNS["bundled"], f"--interp-ray={address}"],
                           cwd=repo, capture_output=True, text=True, timeout=120, env=bare)
        assert r.returncode == 4 and "uses Ray's token authentication and no token is here" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]

        mini = tmp_path / "mini.yaml"
        mini.write_text((ROOT / "cases" / "tiny-stdlib.yaml").read_text().split("cases:")[0] + "cases:\n  - id: sparse\n    on: functions\n    expect:\n      - l0: {max: 1000}\n")
        both = subprocess.run([sys.executable, "-c", TWO_JOINS, str(mini), address, cluster.address], capture_output=True, text=True, timeout=600, env=driver_env())
        assert both.returncode == 0, both.stderr[-3000:]
        assert json.loads(both.stdout.strip().splitlines()[-1]) == [1, 1, []], both.stderr[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def unit_workers(node: Any) -> list[int]:
    """Pids of the task workers (process title ray::interp-tests-unit) a node's raylet started."""
    import psutil

    raylet = node.all_processes["raylet"][0].process.pid
    out = []
    for child in psutil.Process(raylet).children(recursive=True):
        try:
            if UNIT in " ".join(child.cmdline()):
                out.append(child.pid)
        except psutil.Error:
            continue
    return out


def remove_when_running(cluster: Any, nodes: list[Any], proc: subprocess.Popen[str], then: list[Any] = (), timeout: float = 240) -> None:  # type: ignore[assignment]
    """Remove the nodes as soon as one of them runs a task of the run (the node running it), then `then`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        running = [node for node in nodes if unit_workers(node)]
        if running:
            cluster.remove_node(running[0], allow_graceful=False)
            for node in then:
                if node is not running[0]:
                    cluster.remove_node(node, allow_graceful=False)
            return
        time.sleep(0.2)
    raise AssertionError("the run's tasks never started on the nodes to remove")


def test_a_node_lost_while_its_task_runs_changes_no_result(repo: Path) -> None:
    cluster = start_cluster()
    try:
        out = repo / "ray-lost.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *RUNS["sweep"], f"--interp-json={out}", f"--interp-ray={cluster.address}"],
            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=driver_env(),
        )
        remove_when_running(cluster, [cluster.workers[0]], proc)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode in (0, 1) and "FAILED (" not in stdout, stdout[-3000:] + stderr[-3000:]
        assert document(out) == local_document(repo, "sweep")
    finally:
        cluster.shutdown()


def test_a_task_that_fails_all_its_retries_fails_its_items_and_writes_no_baseline(repo: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    (user / "cases").mkdir(parents=True)
    shutil.copy(ROOT / "cases" / "tiny-stdlib.yaml", user / "cases" / "claims.yaml")
    (user / "pytest.ini").write_text("[pytest]\n")
    cluster = start_cluster()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "cases/", "--interp-update", f"--interp-ray={cluster.address}", "--interp-ray-retries=0"],
            cwd=user, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=driver_env(),
        )
        remove_when_running(cluster, list(cluster.workers), proc, then=list(cluster.workers))  # every worker node goes
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        cluster.shutdown()
    assert proc.returncode == 1, stdout[-3000:] + stderr[-3000:]
    assert "the Ray node running it was lost" in stdout and "Traceback" not in stdout + stderr, stdout[-3000:]
    assert "7 failed" in stdout
    assert not (user / "cases" / "claims.yaml.baseline.json").exists()


def test_an_address_where_nothing_answers_is_one_usage_line_within_15_seconds(pytester: pytest.Pytester) -> None:
    start = time.monotonic()
    result = pytester.runpytest("--interp-ray", "127.0.0.1:1", "-p", "no:cacheprovider")
    assert time.monotonic() - start < 15
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--interp-ray 127.0.0.1:1: nothing answers at 127.0.0.1:1" in err and "Traceback" not in err
    bad = pytester.runpytest("--interp-ray", "no-port-here", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "expected local, auto, HOST:PORT or ray://HOST:PORT" in bad.stderr.str()


def test_without_ray_the_option_names_the_extra(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = pytester.runpytest("--interp-ray", "local", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert '--interp-ray needs Ray, which is not installed here: pip install "interp-tests[ray]"' in result.stderr.str()


def test_xdist_and_ray_are_refused_together(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--interp-ray", "local", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "drop -n (pytest-xdist)" in result.stderr.str()


def test_a_run_without_the_option_never_imports_ray(tmp_path: Path) -> None:
    shutil.copy(ROOT / "cases" / "tiny-stdlib-transcoder.yaml", tmp_path / "claims.yaml")
    code = "import sys, pytest; rc = pytest.main(sys.argv[1:]); print('RAY', 'ray' in sys.modules); sys.exit(rc)"
    r = subprocess.run([sys.executable, "-c", code, "-p", "no:cacheprovider", "-q", "claims.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0 and "RAY False" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
