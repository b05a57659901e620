"""Session state: options, the registry, one engine per target, the baselines. No pytest here."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..baselines.protocol import Baselines
from ..cases.plan import CasePlan, TargetKey
from ..cases.schema import AUTO, SaeRef, Target
from ..common.errors import InterpTestsError, LoadError
from ..common.memo import Memo
from ..common.shipped import on_this_node
from ..report.summary import RunSummary
from .options import Options

if TYPE_CHECKING:
    from ..checks.runner import CaseResult
    from ..compute.engine import ModelCache, SaeEngine
    from ..compute.matching import Matching
    from ..compute.registry import Registry

DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
SMALL_SWEEP_BYTES = 256 << 20  # SAE weights below this need no load groups


@dataclass(frozen=True)
class Record:
    """A finished case: passed or not, its failure text, its JUnit properties, and the JSON-able data the
    session's summary absorbs (travels on pytest reports, also from xdist workers)."""

    ok: bool
    text: str
    junit: list[tuple[str, Any]]
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What running one case gave, before any baseline: its result, or why it could not run (`problem`: the
    record's text, with an unrunnable result), or that a `HOOK=` candidate does not apply to it."""

    result: CaseResult | None
    problem: str | None = None
    not_this_hook: bool = False


class NotThisHook(InterpTestsError):
    """A `HOOK=` candidate met a case file SAE at another hook (found out only when the SAE was loaded)."""


@dataclass
class Session:
    options: Options = field(default_factory=Options)
    _registry: Registry | None = None
    model_caches: dict[int, ModelCache] = field(default_factory=dict)  # id(model) -> its texts' activations at every hook
    engines: Memo[SaeEngine] = field(default_factory=Memo)
    matchings: Memo[Matching] = field(default_factory=Memo)  # (reference, candidate) -> feature matching
    wanted: dict[TargetKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    baselines: Baselines = field(init=False)
    run: RunSummary = field(init=False)
    prefetched: list[str] = field(default_factory=list)
    progress: Callable[[str], None] | None = None  # where long corpus passes report how far they are
    loss_corpora: set[tuple[object, str]] = field(default_factory=set)
    legacy_corpora: set[tuple[TargetKey, tuple[object, str]]] = field(default_factory=set)  # (target, corpus) a legacy EV reads
    corpus_readers: dict[tuple[object, str], set[TargetKey]] = field(default_factory=dict)
    replaced: set[str] = field(default_factory=set)  # labels of the candidates that replaced an SAE
    reference_engines: dict[Any, SaeEngine] = field(default_factory=dict)  # (reference, hook, model) -> its engine
    missing_references: dict[str, str] = field(default_factory=dict)  # a candidate's reference that did not load -> why
    passes: list[str] = field(default_factory=list)  # one line per corpus pass
    labels: dict[SaeRef, str] = field(default_factory=dict)  # a candidate's SAE -> its short label
    groups: dict[TargetKey, int] = field(default_factory=dict)  # each target's load group (schedule)
    group_bytes: dict[tuple[str, int], int] = field(default_factory=dict)  # (model, group) -> SAE weight bytes
    group_peaks: dict[tuple[str, int], int | None] = field(default_factory=dict)  # (model, group) -> peak resident bytes
    held: dict[str, int] = field(default_factory=dict)  # model -> the load group whose SAEs are loaded
    budget: int | None = None
    cluster: Any = None  # a cluster.ClusterRun under --interp-ray (set by `cluster.join`): the cases run in its tasks
    pair: bool = False  # tolerance auto somewhere: a candidate's reference is measured on the same windows

    def __post_init__(self) -> None:
        self.baselines = Baselines(self.options.policy)
        self.run = RunSummary(self.baselines)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from ..compute.registry import Registry, resolve_device

            device = resolve_device(self.options.device)
            self._registry = Registry(device=spread(device, self.options.worker), dtype=self.options.dtype)
        return self._registry

    @property
    def batch_tokens(self) -> int:
        if self.options.batch_tokens is not None:
            return self.options.batch_tokens
        kind = self.registry.device.split(":")[0]
        return DEFAULT_BATCH_TOKENS.get(kind, 4096)

    def targets(self, target: Target, sae: SaeRef) -> list[TargetKey]:
        """The keys a case of `target` runs against for its SAE `sae`: one per `--interp-sae` candidate that
        replaces it (every candidate without HOOK=, those whose HOOK= is the SAE's hook), else the SAE itself."""
        key = TargetKey.of(target, sae)
        candidates = self.options.candidates
        if not candidates:
            return [key]
        declared: list[str | None] = []  # the reference's hook, looked up once and only when a HOOK= needs it
        out = []
        for c in candidates:
            if c.hook is not None:
                if not declared:
                    from ..compute.registry import declared_hook

                    declared.append(target.hook or declared_hook(sae))
                if declared[0] is not None and declared[0] != c.hook:
                    continue
            out.append(dataclasses.replace(key, sae=c.sae, reference=sae, name=c.label, only_at=c.hook))
        return out or [key]

    def want(
        self, key: TargetKey, texts: list[str], corpora: set[tuple[object, str]] | None = None,
        corpora_with_loss: set[tuple[object, str]] | None = None, corpora_with_legacy: set[tuple[object, str]] | None = None,
    ) -> None:
        """Texts a selected case will encode; they are computed together on first use of the target. Corpora
        are read in one streamed pass for every target that reads them (with the loss statistics where a loss
        check reads them)."""
        self.wanted[key].update(texts)
        for corpus in corpora or ():
            self.corpus_readers.setdefault(corpus, set()).add(key)
        self.loss_corpora.update(corpora_with_loss or ())
        self.legacy_corpora.update((key, c) for c in corpora_with_legacy or ())

    def corpus_peers(self, corpus: tuple[object, str], group: int | None = None) -> list[SaeEngine]:
        """The engines of the targets that read a corpus (those that could be built), in one load group."""
        out = []
        for key in self.corpus_readers.get(corpus, ()):
            if group is not None and self.groups.get(key, 0) != group:
                continue  # another load group: read in that group's pass
            try:
                out.append(self.engines.get(key, functools.partial(self._build, key)))
            except InterpTestsError:
                continue  # that target's cases fail with its error
        return out

    def engine(self, key: TargetKey) -> SaeEngine:
        group = self.groups.get(key, 0)
        if self.held.get(key.model) != group:
            self._switch_group(key.model, group)
        if key not in self.engines:
            for wanted in list(self.wanted):  # every selected target's hook joins its model's one forward pass
                if wanted not in self.engines and self.groups.get(wanted, 0) == group:
                    try:
                        self.engines.get(wanted, functools.partial(self._build, wanted))
                    except InterpTestsError:
                        pass  # remembered: the cases of that target fail with it
        got = self.engines.get(key, lambda: self._build(key))
        got.want(self.wanted.pop(key, ()))
        return got

    # ------------------------------------------------------------------ load groups (--interp-memory)
    def memory_budget(self) -> int | None:
        """Bytes of SAE weights a load group may hold: --interp-memory, else half the memory free now."""
        from ..compute.memory import default_budget

        if self.options.memory_gb is not None:
            return int(self.options.memory_gb * 1e9)
        return default_budget(self.registry.device)

    def sae_bytes(self, ref: SaeRef) -> int:
        """What an SAE's weights take once loaded in this run's dtype, read before loading from its weights file
        in any format (`memory.checkpoint_bytes`; 0 when that cannot be told, for registry SAEs from the hub)."""
        from ..compute.memory import checkpoint_bytes
        from ..compute.registry import BUNDLED_DIR, BUNDLED_RELEASES

        if ref.path is not None:
            directory = on_this_node(ref.path)
        elif ref.release in BUNDLED_RELEASES:
            directory = BUNDLED_DIR / str(ref.release) / str(ref.id)
        else:
            return 0
        return checkpoint_bytes(directory, self.options.dtype) or 0

    def schedule(self, keys: list[TargetKey]) -> dict[TargetKey, int]:
        """Split each model's SAEs into load groups whose weights fit the memory budget (the reference SAEs,
        held throughout, counted first); the cases of a group run together, one corpus pass serves the group,
        and its SAEs are released before the next group loads. Returns each key's group."""
        by_model: dict[str, list[TargetKey]] = {}
        for key in dict.fromkeys(keys):
            by_model.setdefault(key.model, []).append(key)
        total = sum(self.sae_bytes(s) for s in {k.sae for k in keys} | {k.reference for k in keys if k.reference is not None})
        if self.options.memory_gb is None and total <= SMALL_SWEEP_BYTES:
            return {}  # fits any machine: one group, and no need to ask the device (which imports torch) what is free
        budget = self.memory_budget()
        self.budget = budget
        for model, model_keys in by_model.items():
            fixed = sum(self.sae_bytes(r) for r in {k.reference for k in model_keys if k.reference is not None})
            room = None if budget is None else budget - fixed
            group, held, count = 0, 0, 0
            counted: set[SaeRef] = set()  # an SAE that several keys share counts once
            for key in model_keys:
                size = 0 if key.sae in counted else self.sae_bytes(key.sae)
                counted.add(key.sae)
                if room is not None and count and held + size > room:
                    group, held, count = group + 1, 0, 0
                self.groups[key] = group
                held += size
                count += 1
                self.group_bytes[(model, group)] = self.group_bytes.get((model, group), fixed) + size
        return dict(self.groups)

    def _switch_group(self, model: str, group: int) -> None:
        """Release the SAEs of the model's other load groups (their engines, weights and matchings), then start
        measuring this group's peak memory."""
        import gc

        from ..compute.memory import peak_rss, reset_peak

        previous = self.held.get(model)
        self.held[model] = group
        if previous is None and not self.groups:
            return  # one group: nothing to release, nothing to measure per group
        if previous is not None:
            self.group_peaks[(model, previous)] = peak_rss()
        held_refs = {k.reference for k in self.groups if k.reference is not None}
        released = 0
        for key, _ in list(self.engines.items()):
            key = cast(TargetKey, key)
            if key.model == model and self.groups.get(key, 0) != group:
                self.engines.values.pop(key, None)
                released += 1
                if key.sae not in held_refs and self._registry is not None:
                    self._registry.release(key.sae)
                for pair in [m for m, _ in self.matchings.items() if cast(tuple[SaeRef, SaeRef], m)[1] == key.sae]:
                    self.matchings.values.pop(pair, None)
        if released:
            gc.collect()  # tensors held in reference cycles (hooks, closures) go now, not at some later collection
        if self.registry.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.registry.device)
        reset_peak()

    def group_lines(self) -> list[str]:
        """One line per load group, when the sweep needed more than one: its SAEs, their weights, its peak memory."""
        from ..compute.memory import gigabytes, peak_rss

        counts: dict[tuple[str, int], int] = {}
        for key, group in self.groups.items():
            counts[(key.model, group)] = counts.get((key.model, group), 0) + 1
        if not counts or max(g for _, g in counts) == 0:
            return []
        for model, group in self.held.items():  # the group still held: its peak so far
            self.group_peaks.setdefault((model, group), peak_rss())
        lines = []
        for (model, group), n in sorted(counts.items()):
            of = max(g for m, g in counts if m == model) + 1
            peak = self.group_peaks.get((model, group))
            lines.append(
                f"interp-tests: load group {group + 1} of {of} on {model}: {n} SAEs, {gigabytes(self.group_bytes.get((model, group)))} of weights "
                f"with the references (budget {gigabytes(self.budget)}), peak resident memory {gigabytes(peak) if peak else 'not run'}"
            )
        return lines

    def _build(self, key: TargetKey) -> SaeEngine:
        from ..compute.engine import HookCache, ModelCache, SaeEngine, check_hook, hook_width
        from ..compute.registry import same_model
        from ..compute.transcoders import output_hook

        reg = self.registry
        if key.only_at is not None and key.reference is not None:  # HOOK=: only where the reference reads HOOK
            reference_hook = key.hook or reg.sae(key.reference).cfg.metadata.hook_name
            if reference_hook != key.only_at:
                raise NotThisHook(f"--interp-sae {key.only_at}=... replaces the SAEs at {key.only_at}; {key.reference.label} reads {reference_hook}")
        sae = reg.sae(key.sae)
        hook = key.hook or sae.cfg.metadata.hook_name
        if not hook:
            raise InterpTestsError(f"SAE {key.label} does not name its hook (cfg.metadata.hook_name): set target.hook")
        ref, label, reference = key.sae, key.label, key.reference
        if reference is not None:
            self.replaced.add(key.checkpoint)
        model = reg.model_for_sae(key.model, sae, json.loads(key.model_kwargs))
        check_hook(model, hook)
        checkpoint_model = getattr(sae.cfg.metadata, "model_name", None)
        if reg.injected_model is None and not same_model(key.model, checkpoint_model):
            raise LoadError(
                f"SAE {key.checkpoint} was trained on {checkpoint_model!r} (its config says), and the case file's model is "
                f"{key.model!r}: give the case file the checkpoint's model, or the checkpoint of this model"
            )
        width = hook_width(model, hook)
        if width is not None and width != int(sae.cfg.d_in):
            raise LoadError(
                f"width mismatch: the SAE {key.label} takes d_in={int(sae.cfg.d_in)}, but hook {hook!r} of the model gives {width}: "
                "the SAE was trained on another model or hook (set target.hook or pick the matching SAE)"
            )
        if id(model) not in self.model_caches:
            self.model_caches[id(model)] = ModelCache(model, self.batch_tokens)
        hooks = HookCache(model, hook, self.batch_tokens, shared=self.model_caches[id(model)])
        out_hook = output_hook(sae)  # a transcoder predicts another hook: its activations are read in the same forward
        if out_hook is not None:
            check_hook(model, out_hook)
            hooks.shared.register(out_hook)
        engine = SaeEngine(hooks, sae, label, replaces=reference.label if reference is not None else None, ref=ref, reference=reference, out_hook=out_hook)
        engine.progress = self.progress
        engine.pair = self.pair
        engine.loss_corpora = self.loss_corpora
        engine.pass_log = self._log_pass
        engine.legacy_corpora = {corpus for k, corpus in self.legacy_corpora if k == key}
        engine.checkpoint = key.checkpoint if key.name else ""
        if key.name:
            self.labels[key.sae] = key.name
        group = self.groups.get(key, 0)
        engine.corpus_peers = lambda corpus: [e for e in self.corpus_peers(corpus, group) if e.hooks.shared is engine.hooks.shared]
        if reference is not None:
            self._attach_reference(engine, reference)
        return engine

    def _attach_reference(self, engine: SaeEngine, reference: SaeRef) -> None:
        """A candidate engine gets the reference SAE on the same activations and the feature matching."""
        from ..compute.engine import SaeEngine
        from ..compute.matching import match_features
        from ..compute.transcoders import output_hook

        try:
            reference_sae = self.registry.sae(reference)
        except InterpTestsError as exc:
            engine.matching_problem = f"no feature matching against the reference {reference.label}: {exc}"
            self.missing_references.setdefault(reference.label, str(exc))
            return
        try:
            key = (reference, engine.hooks.hook, id(engine.hooks.shared))  # one reference engine for all its candidates
            if key not in self.reference_engines:
                ref_engine = SaeEngine(engine.hooks, reference_sae, reference.label, ref=reference, out_hook=output_hook(reference_sae))
                ref_engine.loss_corpora = self.loss_corpora  # paired intervals: its corpus values in the candidates' pass
                ref_engine.progress = self.progress
                ref_engine.pass_log = self._log_pass
                self.reference_engines[key] = ref_engine
            engine.reference_engine = self.reference_engines[key]
            engine.reference_engine.legacy_corpora |= engine.legacy_corpora  # its legacy inputs kept in the candidates' pass
            engine.matching = self.matchings.get((reference, engine.ref), lambda: match_features(reference_sae, engine.sae))
        except InterpTestsError as exc:
            engine.matching_problem = f"no feature matching against the reference {reference.label}: {exc}"

    def unused_candidates(self) -> bool:
        """True (and a line that says so) for each `--interp-sae HOOK=SPEC` that replaced no SAE in a run that
        ran cases: a mistyped hook must not gate a candidate green by running only the references."""
        if not self.run.results:
            return False
        unused = [c for c in self.options.candidates if c.hook is not None and c.label not in self.replaced]
        for c in unused:
            ran = sorted({str(r.get("sae")) for r in self.run.results})
            self.run.finished.append(
                f"interp-tests: --interp-sae {c.given} replaced no SAE: no selected case that ran reads hook "
                f"{c.hook!r} (check the hook name, or the errors of its cases; the SAEs that ran: {', '.join(ran)})"
            )
        return bool(unused)

    def prepare(self, plans: list[CasePlan]) -> list[int]:
        """Register what the selected cases need (their texts, in one batched forward per model; their corpora,
        in one pass per load group) and plan the load groups; returns the order to run them in (each load
        group's cases together; the given order when everything fits at once)."""
        from ..cases.plan import corpora_read, corpora_with_legacy, corpora_with_loss

        for plan in plans:
            self.want(plan.target, plan.texts(), corpora_read(plan), corpora_with_loss(plan), corpora_with_legacy(plan))
        self.pair = self.pair or (self.options.compare and self.options.tolerance == AUTO) or any(
            e.params.baseline == AUTO for plan in plans for e in plan.case.expect
        )
        groups = self.schedule([plan.target for plan in plans])
        order = list(range(len(plans)))
        if groups and max(groups.values()) > 0:
            models = list(dict.fromkeys(plan.target.model for plan in plans))
            order.sort(key=lambda i: (models.index(plans[i].target.model), groups[plans[i].target]))
        if self.options.ray is not None:  # every load group becomes a task now: the cluster works while the items wait
            if self.cluster is None:
                raise InterpTestsError("--interp-ray: the session has not joined its cluster (run.cluster.join) before planning")
            self.cluster.submit([plans[i] for i in order])
        return order

    def close(self) -> None:
        """Leave the cluster (cancelling what is still running) at the end of a run."""
        if self.cluster is not None:
            self.cluster.close()

    def finish(self, complete: bool) -> bool:
        """At the end of a run: a HOOK= candidate that replaced nothing fails it, and the baselines are written
        (after a complete run, and not when a promotion replaced nothing). True when the run must fail for it."""
        unused = self.unused_candidates()
        if self.cluster is not None and (self.cluster.incomplete or self.cluster.pending):
            complete = False  # a case did not run (its task failed for good, or was cancelled): no baseline
        failed = self.run.finish(complete and not unused, self.options.update and bool(self.options.candidates))
        return failed or unused

    def run_plan(self, plan: CasePlan) -> Record:
        """One case on its target, compared with its baseline: what the pytest item and the Python API report.
        A case that cannot run at all (its model or SAE does not load) is a failed record that says why;
        `NotThisHook` propagates (the case does not apply). On a cluster (--interp-ray) the case ran in its
        load group's task; the comparison with the baseline is always made here."""
        outcome = self.cluster.outcome(plan) if self.cluster is not None else self.compute(plan)
        return self.record(plan, outcome)

    def compute(self, plan: CasePlan) -> Outcome:
        """Run one case on its engine (no baselines): where a cluster task and a local run share the work."""
        from ..checks.runner import run_case, unrunnable

        try:
            engine = self.engine(plan.target)
        except NotThisHook as exc:
            return Outcome(None, str(exc), not_this_hook=True)
        except InterpTestsError as exc:
            msg = str(exc)
            prefix = "" if msg.startswith(str(plan.case_file.path)) else f"{plan.where}: "
            return Outcome(unrunnable(plan, msg), f"{prefix}case {plan.case_id!r} on {plan.target.label}: {msg}")
        return Outcome(run_case(plan, engine, strict_identity=self.options.compare))

    def record(self, plan: CasePlan, outcome: Outcome) -> Record:
        """A case's outcome as its record: compared with the baseline unless it could not run."""
        from ..checks.runner import result_to_json
        from ..report.junit import junit_properties
        from ..report.text import render

        if outcome.not_this_hook:
            raise NotThisHook(outcome.problem or "")
        result = outcome.result
        assert result is not None
        if outcome.problem is not None:
            return Record(result.ok, outcome.problem, junit_properties(result), {"baseline": None, "result": result_to_json(result)})
        drift, rows = self.baselines.compare(plan, result)
        result = dataclasses.replace(result, drift=drift)
        data = {"baseline": self.baselines.payload(plan, result, rows), "result": result_to_json(result)}
        return Record(result.ok, render(result) if not result.ok else "", junit_properties(result), data)

    def prefetch(self, keys: list[TargetKey]) -> list[str]:
        """Load (and so download into the local cache) every target's model and SAE, and a candidate's
        reference SAE; raises the first load error. Returns one line per target."""
        lines = []
        for key in dict.fromkeys(keys):
            engine = self.engine(key)
            engine.want(())
            extra = f" (reference {engine.reference.label} too)" if engine.reference is not None and engine.reference_engine is not None else ""
            if engine.matching_problem:
                raise InterpTestsError(engine.matching_problem)
            lines.append(f"interp-tests: prefetched {key.model} + {engine.label} at {engine.hooks.hook}{extra}")
        return lines

    def summary(self) -> list[str]:
        remote = list(self.cluster.lines) if self.cluster is not None else []
        if self._registry is None:
            return remote
        reg = self._registry
        loads = ", ".join(f"{k} x{v}" for k, v in sorted(reg.loads.items())) or "nothing"
        passes = sum(m.forward_passes for m in self.model_caches.values())
        texts = sum(len(set().union(*m.acts.values())) for m in self.model_caches.values())
        hooks = sum(len(m.hooks) for m in self.model_caches.values())
        at = f" (at {hooks} hooks)" if hooks > len(self.model_caches) else ""
        lines = [f"interp-tests: loaded {loads} on {reg.device}/{reg.dtype}; {texts} texts in {passes} batched forward passes{at}"]
        lines.extend(self.passes)
        lines.extend(self.group_lines())
        for key, matching in self.matchings.items():
            reference, candidate = cast(tuple[SaeRef, SaeRef], key)
            lines.append(f"interp-tests: {matching.summary(reference.label, self.labels.get(candidate, candidate.label))}")
        for label, why in self.missing_references.items():
            lines.append(f"interp-tests: the reference {label} does not load here ({why[:200]}): candidates are compared with its recorded "
                         "baselines only (no feature matching; tolerance auto unpaired)")
        return remote + lines

    def _log_pass(self, corpus: Any, engines: list[SaeEngine], all_stats: list[Any]) -> None:
        """One line per corpus pass, naming every SAE it served (one pass serves them all)."""
        names = [e.checkpoint or e.label for e in engines]
        broken = [n for n, s in zip(names, all_stats) if s.error]
        if len(broken) == len(names):
            self.passes.append(f"interp-tests: corpus pass on {', '.join(names[:8])} stopped: the output of every SAE went non-finite")
            return
        stats = next(s for s in all_stats if not s.error)
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        loss = sum(1 for s in all_stats if s.predictions)
        self.passes.append(
            f"interp-tests: corpus pass on {shown}: {stats.tokens:,} tokens in {stats.windows:,} windows (sha256 "
            f"{stats.content_hash[:12]}), {stats.seconds:.1f} s, {stats.tokens_per_second:,.0f} tokens/s"
            + (f" for {len(engines)} SAEs" if len(engines) > 1 else "")
            + ((", with the loss forwards" if loss == len(all_stats) else f", with the loss forwards for {loss}") if loss else "")
            + (f"; non-finite output, left the pass: {', '.join(broken[:8])}" if broken else "")
        )


def spread(device: str, worker: int | None) -> str:
    """Plain 'cuda' on xdist worker k with several GPUs -> 'cuda:{k mod count}'; anything else unchanged."""
    if device != "cuda" or worker is None:
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{worker % count}" if count > 1 else device


def hooks_left(model: Any) -> int:
    """Hooks still attached to a model (0 after every case: shared models stay clean)."""
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.hook_dict.values())
