"""``tulu-jax plan --tune``: the fastest remat policy, mesh and micro-batch count that fit, by the planner's own
estimate, with the global batch and sequence length fixed.

Every candidate is compiled compile-only and planned like ``tulu-jax plan`` (``plan_stage``); one that needs
more than ``1 - HEADROOM`` of HBM does not fit. Candidates are ranked by estimated tokens/s/chip at the step
time's lower bound (then at its upper bound).

The search is pruned so that one config tunes in minutes of compiles, not hours (an 8B compile takes about
two minutes on a 2-core machine):
- **meshes**: pure FSDP with each tensor-parallel width that divides the KV heads (``data`` stays 1: a data
  axis replicates the weights, which FSDP over the same chips never needs more of), plus the config's own;
- **dominance ladders**, per mesh: remat ``none`` first; ``dots`` only when ``none`` does not fit, ``full``
  only when ``dots`` does not; and the fewest micro-batches first, more only when fewer do not fit. Each
  rung executes at least the FLOPs of the one before and moves at least its bytes (remat reruns work, more
  micro-batches gather the weights again), so it cannot be estimated faster; it is tried only for memory;
- **bound**: a candidate whose compute time alone (FLOPs at peak, known before compiling) is no better than
  the best lower bound found so far is skipped. Ties are skipped too: once a compute-bound candidate is
  found, other meshes with the same FLOPs cannot beat its lower bound, though one might have a smaller upper
  bound (plan it with ``--tune-include`` to see);
- **budget**: no new compile starts after ``budget_minutes``; the table says which candidates were skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from tulu_jax.errors import TuluError
from tulu_jax.planning.chips import GIB, Topology
from tulu_jax.planning.estimate import executed_training_flops
from tulu_jax.planning.target import PlanTarget, load_plan_target

HEADROOM = 0.10  # of HBM kept free: XLA's estimate of a program's footprint is not exact
REMAT_LADDER = ("none", "dots", "full")  # the model's policies (models.llama.REMAT_POLICIES), least recompute first
MICRO_BATCH_KEY = {"sft": "training.micro_batches", "dpo": "training.micro_batches", "rm": "training.micro_batches",
                   "rlvr": "ppo.micro_batches"}


@dataclass(frozen=True)
class Candidate:
    remat: str
    mesh: tuple[int, int, int]  # data, fsdp, tensor
    micro_batches: int
    label: str = ""  # "shipped", "included" for rows the user named

    def overrides(self, stage: str) -> list[str]:
        data, fsdp, tensor = self.mesh
        return [f"model.overrides.remat={self.remat}", f"mesh.data={data}", f"mesh.fsdp={fsdp}",
                f"mesh.tensor={tensor}", f"{MICRO_BATCH_KEY[stage]}={self.micro_batches}"]


@dataclass
class Trial:
    candidate: Candidate
    plan: Optional[object] = None  # a Plan
    error: str = ""
    skipped: str = ""  # why it was not compiled
    seconds: float = 0.0

    def fits(self, headroom: float = HEADROOM) -> bool:
        plan = self.plan
        return (plan is not None and all(p.out_of_memory is None for p in plan.programs)
                and plan.peak.total_bytes <= (1 - headroom) * plan.hbm_bytes)


@dataclass
class TuneResult:
    target: PlanTarget
    topology: Topology
    trials: list[Trial] = field(default_factory=list)

    @property
    def ranked(self) -> list[Trial]:
        fitting = [trial for trial in self.trials if trial.fits()]
        return sorted(fitting, key=lambda t: (-t.plan.tokens_per_second_per_chip,
                                              -t.plan.tokens_per_second_per_chip_upper_time))

    @property
    def best(self) -> Optional[Trial]:
        ranked = self.ranked
        return ranked[0] if ranked else None

    def shipped(self) -> Optional[Trial]:
        return next((trial for trial in self.trials if trial.candidate.label.startswith("shipped")), None)


def _stage_rows(target: PlanTarget) -> int:
    config = target.stage_config
    if target.stage == "rlvr":
        return config.rollout.responses_per_step // config.ppo.minibatches
    return config.training.batch_size


def _micro_batch_counts(rows: int, batch_axes: int) -> list[int]:
    return [count for count in range(1, rows + 1) if rows % count == 0 and (rows // count) % batch_axes == 0]


def candidate_meshes(target: PlanTarget, chips: int) -> list[tuple[int, int, int]]:
    heads = target.model.num_kv_heads
    meshes = [(1, chips // tensor, tensor) for tensor in (1, 2, 4, 8, 16)
              if chips % tensor == 0 and heads % tensor == 0]
    return meshes


def _current(target: PlanTarget, chips: int) -> Candidate:
    mesh = target.mesh
    sizes = [mesh.data, mesh.fsdp, mesh.tensor]
    if -1 in sizes:
        known = 1
        for size in sizes:
            known *= size if size != -1 else 1
        sizes[sizes.index(-1)] = chips // known
    config = target.stage_config
    micro = config.ppo.micro_batches if target.stage == "rlvr" else config.training.micro_batches
    return Candidate(target.model.remat, tuple(sizes), micro, "shipped")


def _compute_seconds(target: PlanTarget, candidate: Candidate, topology: Topology) -> Optional[float]:
    """The compute term alone, before compiling (SFT, DPO and RM: FLOPs of the step with this remat)."""
    if target.stage == "rlvr":
        return None
    config = target.stage_config
    rows = config.training.batch_size * (1 if target.stage == "sft" else 2)
    model = target.model.replace(remat=candidate.remat)
    flops = executed_training_flops(model, rows, config.data.max_seq_len)
    return flops / (topology.chip.peak_bf16_flops * topology.num_chips)


def tune(
    config_path: str,
    topology: Topology,
    overrides: Sequence[str] = (),
    stage: Optional[str] = None,
    model: Optional[str] = None,
    include: Sequence[Sequence[str]] = (),
    budget_minutes: float = 25.0,
    report: Callable[[str], None] = lambda line: None,
) -> TuneResult:
    """Search remat × mesh × micro-batches (module docstring); ``include``: extra override sets to plan too."""
    from tulu_jax.planning import plan_stage

    target = load_plan_target(config_path, overrides, stage, model)
    result = TuneResult(target, topology)
    started = time.perf_counter()
    chips = topology.num_chips
    rows = _stage_rows(target)

    def run(candidate: Candidate) -> Trial:
        trial = Trial(candidate)
        if time.perf_counter() - started > budget_minutes * 60:
            trial.skipped = f"over the {budget_minutes:g}-minute budget"
            result.trials.append(trial)
            return trial
        best = result.best
        bound = _compute_seconds(target, candidate, topology)
        if not candidate.label and best is not None and bound is not None and bound >= best.plan.step_seconds:
            trial.skipped = f"its compute time alone ({bound:.2f} s) is no better than the best ({best.plan.step_seconds:.2f} s)"
            result.trials.append(trial)
            return trial
        begin = time.perf_counter()
        try:
            trial.plan = plan_stage(config_path, topology, [*overrides, *candidate.overrides(target.stage)], stage, model)
        except TuluError as error:
            trial.error = str(error).splitlines()[0][:200]
        trial.seconds = time.perf_counter() - begin
        result.trials.append(trial)
        report(_trial_line(trial))
        return trial

    shipped = _current(target, chips)
    run(shipped)
    for extra in include:
        named = _current(load_plan_target(config_path, [*overrides, *extra], stage, model), chips)
        label = "included: " + " ".join(extra)
        if (named.remat, named.mesh, named.micro_batches) == (shipped.remat, shipped.mesh, shipped.micro_batches):
            result.trials[0].candidate = Candidate(shipped.remat, shipped.mesh, shipped.micro_batches, "shipped; " + label)
            continue
        run(Candidate(named.remat, named.mesh, named.micro_batches, label))
    meshes = candidate_meshes(target, chips)
    # Meshes in order of least tensor parallelism (fewest activation all-reduces) first.
    for mesh in meshes:
        counts = _micro_batch_counts(rows, mesh[0] * mesh[1])
        if not counts:
            continue
        for remat in REMAT_LADDER:
            fitted = False
            for count in counts:
                candidate = Candidate(remat, mesh, count)
                if (remat, mesh, count) == (shipped.remat, shipped.mesh, shipped.micro_batches):
                    trial = result.trials[0]
                else:
                    trial = run(candidate)
                if trial.skipped or trial.error:
                    break
                if trial.fits():
                    fitted = True
                    break
                if count == counts[-1] or count >= 8:  # more micro-batches than 8 rarely rescue a plan
                    break
            if fitted or (result.trials and result.trials[-1].skipped):
                break
    return result


def _trial_line(trial: Trial) -> str:
    candidate = trial.candidate
    data, fsdp, tensor = candidate.mesh
    head = f"remat={candidate.remat} mesh={data}×{fsdp}×{tensor} micro_batches={candidate.micro_batches}"
    if trial.skipped:
        return f"{head}: skipped, {trial.skipped}"
    if trial.error:
        return f"{head}: refused, {trial.error}"
    plan = trial.plan
    return (f"{head}: peak {plan.peak.total_bytes / GIB:.1f} GiB, step {plan.step_seconds:.3f}–{plan.step_seconds_upper:.3f} s,"
            f" {plan.tokens_per_second_per_chip:,.0f} tokens/s/chip, compiled in {trial.seconds:.0f} s")


def render_tune(result: TuneResult) -> str:
    topology = result.topology
    hbm = topology.chip.hbm_bytes / GIB
    lines = [
        f"tune of {result.target.source} (stage {result.target.stage}) on {topology.requested}: "
        f"{len([t for t in result.trials if t.plan is not None])} candidates compiled; fits = peak ≤ "
        f"{(1 - HEADROOM) * hbm:.1f} GiB ({1 - HEADROOM:.0%} of {hbm:.0f} GiB HBM)",
        "rank  remat  mesh d×f×t  micro  peak GiB  fits  step s (lower – upper)  bound  MFU est. (lower – upper)  "
        "tokens/s/chip  row",
    ]
    ranked = result.ranked
    order = ranked + [trial for trial in result.trials if trial not in ranked]
    for trial in order:
        candidate = trial.candidate
        mesh = "×".join(map(str, candidate.mesh))
        rank = str(ranked.index(trial) + 1) if trial in ranked else "-"
        label = candidate.label
        if trial.plan is None:
            why = trial.skipped or trial.error
            lines.append(f"{rank:>4}  {candidate.remat:<5}  {mesh:<10}  {candidate.micro_batches:>5}  {why}  {label}")
            continue
        plan = trial.plan
        bound = max((plan.time(p) for p in plan.in_step), key=lambda t: t.lower).bound_by
        lines.append(
            f"{rank:>4}  {candidate.remat:<5}  {mesh:<10}  {candidate.micro_batches:>5}  {plan.peak.total_bytes / GIB:8.1f}  "
            f"{'yes' if trial.fits() else 'no':<4}  {plan.step_seconds:8.3f} – {plan.step_seconds_upper:.3f}  "
            f"{bound:<5}  {plan.mfu:6.1%} – {plan.mfu_upper_time:.1%}  {plan.tokens_per_second_per_chip:13,.0f}  {label}")
    best = result.best
    if best is None:
        lines.append("no candidate fits")
        return "\n".join(lines)
    shipped = result.shipped()
    if shipped is not None and shipped.plan is not None:
        gain = best.plan.tokens_per_second_per_chip / shipped.plan.tokens_per_second_per_chip
        lines.append(f"best: {gain:.2f}× the shipped config's estimated tokens/s/chip (lower bounds)")
    lines.append("winning overrides:")
    lines += best.candidate.overrides(result.target.stage)
    return "\n".join(lines)
