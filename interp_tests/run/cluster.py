"""Sweeps and corpus evaluations on a Ray cluster (`--interp-ray ADDRESS`). No pytest here.

The pytest session stays on the driver, the machine where pytest runs: it collects the items, plans the work,
compares every result with the baselines and writes every report and baseline, as a local run does. What
moves to the cluster is the work of a load group: one model with the SAEs and candidates that share its
forward passes (the sweep's memory budget splits them, and a sweep is split further so that every slot of
the cluster gets work), its case plans and corpora. Each unit is one Ray task (`num_gpus=1` on CUDA, the GPU
chosen by Ray; else `--interp-ray-cpus` CPUs) that returns the same `Outcome`s a local run computes; each
pytest item reports its own as its unit finishes. Ray retries a task whose node was lost (`max_retries`);
a unit that fails all its retries fails its own items with the reason, and the run writes no baseline.

Local checkpoint directories and corpus files travel in Ray's object store up to `--interp-ray-ship` MB in
all; each worker writes them under a directory of its node (`common/shipped.py`). Beyond the limit a worker
reads them where the driver named them: a shared filesystem, or the hub. Ray is imported only here, and only
under `--interp-ray`: nothing else needs it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ray_connect import ClusterError, connect, ray_module, restore_auth_mode

if TYPE_CHECKING:
    from ..cases.plan import CasePlan, TargetKey
    from .options import Options
    from .session import Outcome, Session

# ----------------------------------------------------------------------------- shipping files
@dataclass(frozen=True)
class Shipment:
    """Files for the workers: {absolute path the driver named: {file path: bytes}} and what stayed behind."""

    files: dict[str, dict[str, bytes]]
    digest: str
    left: tuple[str, ...] = ()  # paths over the limit: read in place by the workers


def local_paths(plans: list[CasePlan]) -> list[tuple[str, bool]]:
    """(absolute path, is a checkpoint directory) of every local file the plans read: checkpoints (a
    candidate's and its reference's) and corpus files."""
    from ..cases.schema import CorpusGroup
    from ..compute.corpus import source_path

    out: dict[str, bool] = {}
    for plan in plans:
        for ref in (plan.target.sae, plan.target.reference):
            if ref is not None and ref.path is not None:
                out[str(Path(ref.path).resolve())] = True
        for group in plan.case_file.model.texts.values():
            if isinstance(group, CorpusGroup) and group.corpus.path is not None:
                out[str(source_path(group.corpus, plan.source.parent).resolve())] = False
    return list(out.items())


def checkpoint_files(directory: Path) -> list[Path]:
    """The files a checkpoint directory's loader reads: its regular files, and a sparsify run's config.json one
    folder up (the model's name)."""
    files = [p for p in sorted(directory.iterdir()) if p.is_file()] if directory.is_dir() else []
    run_config = directory.parent / "config.json"
    if (directory / "sae.safetensors").is_file() and run_config.is_file():
        files.append(run_config)
    return files


def ship(plans: list[CasePlan], limit_bytes: int) -> Shipment:
    """Read the plans' local files for the workers, in order, while they fit in `limit_bytes`."""
    files: dict[str, dict[str, bytes]] = {}
    left: list[str] = []
    used = 0
    digest = hashlib.sha256()
    for path, is_dir in local_paths(plans):
        members = checkpoint_files(Path(path)) if is_dir else [Path(path)] if Path(path).is_file() else []
        size = sum(p.stat().st_size for p in members)
        if not members:
            continue  # not there on the driver either: the worker's load reports it
        if used + size > limit_bytes:
            left.append(path)
            continue
        used += size
        files[path] = {str(p): p.read_bytes() for p in members}
        for name, data in files[path].items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return Shipment(files, digest.hexdigest(), tuple(left))


def unpack(shipment: Shipment) -> dict[str, str]:
    """Write a shipment under this node's temporary directory (once per node and content) and return the
    path map for `common/shipped.py`."""
    root = Path(tempfile.gettempdir()) / "interp-tests-shipped" / shipment.digest[:24]
    done = root / ".complete"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        for members in shipment.files.values():
            for name, data in members.items():
                target = root / name.lstrip(os.sep)
                target.parent.mkdir(parents=True, exist_ok=True)
                part = target.with_name(target.name + f".{os.getpid()}.part")
                part.write_bytes(data)
                os.replace(part, target)
        done.write_text("")
    return {path: str(root / path.lstrip(os.sep)) for path in shipment.files}


# ----------------------------------------------------------------------------- the work of one task
@dataclass
class InMemory:
    """A model and SAEs the driver holds as objects (the Python API's `model=` and in-memory `saes=`)."""

    model: Any
    saes: dict[Any, Any]


@dataclass
class UnitResult:
    """What one task sends back: each plan's outcome (by its index in the unit), the lines of the worker's
    session summary (loads, corpus passes, matchings), the candidates that replaced an SAE, and where it ran."""

    outcomes: list[Outcome]
    lines: list[str]
    replaced: set[str]
    node: str
    seconds: float
    started: float = 0.0  # wall clock (time.time()) when the task's code began, and when it returned
    ended: float = 0.0


def run_unit(options: Options, plans: list[CasePlan], shipment: Shipment, threads: int, objects: InMemory | None = None) -> UnitResult:
    """The Ray task: a session of its own on the worker runs the unit's plans as a local run does."""
    started = time.time()
    start = time.perf_counter()
    import torch

    from ..common import shipped
    from .session import Outcome, Session

    torch.set_num_threads(max(1, threads))
    shipped.SHIPPED.clear()
    shipped.SHIPPED.update(unpack(shipment))
    session = Session(replace(options, ray=None))
    if objects is not None:  # what the driver held in memory (evaluate(model=..., saes=[SAE objects]))
        session.registry.injected_model = objects.model
        session.registry.injected_saes.update(objects.saes)
    outcomes: list[Outcome] = []
    missing = {p for p in shipment.left if not Path(p).exists()}
    node = _node_name()
    session.prepare(plans)
    for plan in plans:
        unreadable = [p for p in (plan.target.sae.path, plan.target.reference.path if plan.target.reference else None) if p and str(Path(p).resolve()) in missing]
        if unreadable:
            from ..checks.runner import unrunnable

            why = (f"{unreadable[0]} is not readable on Ray node {node}: it was not shipped (over the --interp-ray-ship limit); "
                   "put it on a filesystem every node mounts at the same path, or on the hub")
            outcomes.append(Outcome(unrunnable(plan, why), f"{plan.where}: case {plan.case_id!r} on {plan.target.label}: {why}"))
            continue
        outcomes.append(session.compute(plan))
    return UnitResult(outcomes, session.summary(), set(session.replaced), node, time.perf_counter() - start, started, time.time())


def _node_name() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # outside a Ray worker (tests call run_unit directly)
        return socket.gethostname()


# ----------------------------------------------------------------------------- the driver
@dataclass
class Unit:
    number: int
    model: str
    plans: list[CasePlan]
    checkpoints: list[str]


def units_of(plans: list[CasePlan], groups: dict[TargetKey, int], slots: int) -> list[Unit]:
    """The tasks of a run: each model's load groups, each split into at most as many parts as the cluster has
    slots (a part keeps all the cases of one target together, so one corpus pass serves its SAEs)."""
    by_group: dict[tuple[str, int], dict[TargetKey, list[CasePlan]]] = {}
    for plan in plans:
        by_group.setdefault((plan.target.model, groups.get(plan.target, 0)), {}).setdefault(plan.target, []).append(plan)
    total = sum(len(keys) for keys in by_group.values())
    per_unit = max(1, -(-total // max(1, slots)))
    units: list[Unit] = []
    for (model, _), keys in by_group.items():
        ordered = list(keys.items())
        for i in range(0, len(ordered), per_unit):
            part = ordered[i : i + per_unit]
            units.append(Unit(len(units), model, [p for _, ps in part for p in ps], [k.checkpoint for k, _ in part]))
    return units


@dataclass
class ClusterRun:
    """The driver's side: submits one task per unit, hands each item its outcome as the units finish."""

    session: Session
    address: str
    cpus: int = 1
    retries: int = 3
    ship_limit_bytes: int = 1 << 30
    units: list[Unit] = field(default_factory=list)
    unit_of: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(plan) -> (unit, index in it)
    pending: dict[Any, Unit] = field(default_factory=dict)  # object ref -> its unit
    done: dict[int, UnitResult | str] = field(default_factory=dict)  # unit -> its result, or why it failed
    lines: list[str] = field(default_factory=list)
    incomplete: bool = False
    submitted_at: float = 0.0
    submitted_wall: float = 0.0
    owns_connection: bool = False  # this run connected, so it disconnects at its end
    timings: list[dict[str, float]] = field(default_factory=list)  # per finished task: Ray's overheads (benchmarks)

    def start(self) -> None:
        self.owns_connection = connect(self.address)

    def slots(self) -> tuple[int, bool]:
        """(tasks the cluster runs at once, whether they take a GPU each)."""
        ray = ray_module()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        device = self.session.options.device
        if device.startswith("cuda") or (device == "auto" and gpus > 0):
            if gpus == 0:
                raise ClusterError(f"--interp-device {device}: the Ray cluster has no GPU (resources: {', '.join(f'{k}={v:g}' for k, v in sorted(resources.items()) if k in ('CPU', 'GPU'))})")
            return gpus, True
        return max(1, int(resources.get("CPU", 1)) // self.cpus), False

    def submit(self, plans: list[CasePlan]) -> None:
        """One task per unit, all submitted now: the cluster works while pytest walks the items."""
        if not plans:
            return
        ray = ray_module()
        slots, gpu = self.slots()
        self.units = units_of(plans, self.session.groups, slots)
        shipment = ship(plans, self.ship_limit_bytes)
        if shipment.left:
            self.lines.append(
                f"interp-tests: ray: {len(shipment.left)} local path(s) over the --interp-ray-ship limit of {self.ship_limit_bytes / 1e6:,.0f} MB "
                f"were not shipped; the workers read them in place: {', '.join(shipment.left[:3])}{' ...' if len(shipment.left) > 3 else ''}"
            )
        shipped_ref = ray.put(shipment)
        registry = self.session._registry
        objects = None
        if registry is not None and (registry.injected_model is not None or registry.injected_saes):
            objects = ray.put(InMemory(registry.injected_model, dict(registry.injected_saes)))
        options = replace(self.session.options, ray=None, device="cuda" if gpu else self.session.options.device)
        task = ray.remote(run_unit).options(
            num_cpus=0 if gpu else self.cpus, num_gpus=1 if gpu else 0, max_retries=self.retries, retry_exceptions=False, name="interp-tests-unit"
        )
        self.submitted_at = time.perf_counter()
        self.submitted_wall = time.time()
        for unit in self.units:
            for i, plan in enumerate(unit.plans):
                self.unit_of[id(plan)] = (unit.number, i)
            self.pending[task.remote(options, unit.plans, shipped_ref, self.cpus, objects)] = unit
        self.lines.append(f"interp-tests: ray: {len(self.units)} task{'s' if len(self.units) != 1 else ''} for {len(plans)} cases on {slots} {'GPUs' if gpu else 'task slots'} ({self.address})")

    def outcome(self, plan: CasePlan) -> Outcome:
        """The plan's outcome, waiting for its unit (and reporting every unit that finishes meanwhile)."""
        from ..checks.runner import unrunnable
        from .session import Outcome

        number, index = self.unit_of[id(plan)]
        while number not in self.done:
            self._wait_one()
        got = self.done[number]
        if isinstance(got, str):
            return Outcome(unrunnable(plan, got), f"{plan.where}: case {plan.case_id!r} on {plan.target.label}: {got}")
        return got.outcomes[index]

    def _wait_one(self) -> None:
        ray = ray_module()
        try:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
        except KeyboardInterrupt:
            self.cancel()
            raise
        for ref in ready:
            unit = self.pending.pop(ref)
            try:
                result: UnitResult | str = ray.get(ref)
            except KeyboardInterrupt:
                self.cancel()
                raise
            except Exception as exc:  # the task failed all its retries: its items fail with the reason
                result = failure_reason(exc, self.retries)
                self.incomplete = True
            self.done[unit.number] = result
            self._report(unit, result)

    def _report(self, unit: Unit, result: UnitResult | str) -> None:
        shown = ", ".join(unit.checkpoints[:4]) + (f" and {len(unit.checkpoints) - 4} more" if len(unit.checkpoints) > 4 else "")
        finished = len(self.done)
        if isinstance(result, str):
            line = f"interp-tests: ray: task {finished}/{len(self.units)} FAILED ({unit.model}: {shown}): {result}"
        else:
            line = (f"interp-tests: ray: task {finished}/{len(self.units)} done ({unit.model}: {shown}, {len(unit.plans)} cases) on node "
                    f"{result.node} in {result.seconds:.1f} s, {time.perf_counter() - self.submitted_at:.1f} s since submission")
            self.session.replaced.update(result.replaced)
            self.lines.extend(result.lines)
            self.timings.append({"submit_to_start_s": result.started - self.submitted_wall, "run_s": result.seconds,
                                 "result_transfer_s": time.time() - result.ended, "unit": unit.number})
        self.lines.append(line)
        if self.session.progress is not None:
            self.session.progress(line)

    def cancel(self) -> None:
        """Cancel every task not finished (Ctrl-C, an early stop)."""
        ray = ray_module()
        for ref in list(self.pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or lost: nothing to cancel
                pass
        if self.pending:
            self.incomplete = True
        self.pending.clear()

    def close(self) -> None:
        if self.pending:
            self.cancel()
        ray = ray_module()
        if self.owns_connection and ray.is_initialized():
            ray.shutdown()
            restore_auth_mode()

    def prefetch(self, keys: list[TargetKey]) -> list[str]:
        """--interp-prefetch through the cluster: every node loads (and caches) every target, one task per node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = ray_module()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        options = replace(self.session.options, ray=None)
        task = ray.remote(prefetch_here).options(num_cpus=self.cpus, max_retries=0)
        refs = {task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(options, keys): n.get("NodeManagerAddress", "?") for n in nodes}
        lines: list[str] = []
        for ref, node in refs.items():
            try:
                lines.extend(f"{line} (on node {node})" for line in ray.get(ref))
            except Exception as exc:
                raise ClusterError(f"--interp-prefetch on node {node}: {failure_reason(exc, 0)}") from None
        return lines


def join(session: Session) -> ClusterRun:
    """Start or join the Ray cluster of the session's --interp-ray (once) and attach it to the session, whose
    `prepare` then submits the plans to it; ClusterError when it cannot be used."""
    if session.cluster is None:
        o = session.options
        cluster = ClusterRun(session, str(o.ray), cpus=o.ray_cpus, retries=o.ray_retries, ship_limit_bytes=int(o.ray_ship_mb * 1e6))
        cluster.start()
        session.cluster = cluster
    return session.cluster  # type: ignore[no-any-return]


def prefetch_here(options: Options, keys: list[TargetKey]) -> list[str]:
    from .session import Session

    return Session(options).prefetch(keys)


def failure_reason(exc: BaseException, retries: int) -> str:
    """Why a task failed for good, in one line: the node lost, out of memory, or the error it raised."""
    import ray.exceptions as rex

    first = (str(exc).strip().splitlines() or [""])[0][:300]
    after = f" after {retries} retries" if retries else ""
    if isinstance(exc, rex.OutOfMemoryError):
        return f"the Ray task ran out of memory{after} ({first})"
    if isinstance(exc, (rex.NodeDiedError, rex.WorkerCrashedError, rex.ActorDiedError, rex.LocalRayletDiedError, rex.ObjectLostError)):
        return f"the Ray node running it was lost{after} ({type(exc).__name__})"
    if isinstance(exc, rex.TaskCancelledError):
        return "the Ray task was cancelled"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"the Ray task raised {type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[-1][:300]}"
    return f"the Ray task failed{after}: {type(exc).__name__}: {first}"
