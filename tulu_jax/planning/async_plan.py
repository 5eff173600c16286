"""The plan of asynchronous RLVR (``rollout.async_steps >= 1``): the slice split into a sampler sub-mesh and a
learner sub-mesh, the weight transfer between them after each update, and the step time against the
synchronous plan's.

- **Split.** ``rollout.sampler_chips``, or the advice: the synchronous plan's sampler and learner times on all
  N chips, each scaled to the chips it would get (rollout × N/S, learner × N/(N−S): decode rows and training
  tokens spread over the chips), the split with the smallest ``max(rollout, learner) + transfer`` among those
  of whole VMs whose learner mesh divides the rollout rows. The advised split is then compiled: the sampler
  program on its S chips (only its bf16 weights resident there) and the learner's prepare and update on the
  other N−S (the config's ``mesh.tensor``, the rest over fsdp), each measured like any other program.
- **Transfer.** The policy in the sampler's layout: bf16, each chip of a sampling group holding 1/group of it,
  every group a full copy. At the least it crosses the cut between the sub-meshes once and each sampler
  chip receives its share over its own links: ``max(bytes / (cut links × link), share / (2·dims·link))``,
  the cut being the two planes across the slice's longest axis (a torus). Like the other ICI figures it is
  a lower bound at peak link rate. No transfer program exists yet (the runner is not built), so this is a
  formula, not a compiled program.
- **Step time.** Synchronous: the synchronous plan's lower bound (sampler reshard, sampler, prepare, update in
  turn). Asynchronous: ``max(rollout, learner) + transfer`` with the sub-meshes' compiled programs, assuming
  the two overlap fully, which no TPU run has checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tulu_jax import sharding
from tulu_jax.errors import ConfigError, MeshError
from tulu_jax.planning.chips import GB, GIB, Topology
from tulu_jax.planning.compile import CompiledProgram, compile_program
from tulu_jax.planning.devices import topology_devices
from tulu_jax.planning.step_time import ProgramTime, program_time
from tulu_jax.planning.target import PlanTarget


@dataclass(frozen=True)
class WeightTransfer:
    total_bytes: int  # what the sampler sub-mesh holds of the policy in all: one bf16 copy per group
    policy_bytes: int  # one bf16 copy: what must cross the cut at the least
    per_chip_bytes: int  # one sampler chip's share: policy / group
    group: int
    cut_links: int
    seconds: float


@dataclass(frozen=True)
class SplitEstimate:
    sampler_chips: int
    rollout_seconds: float
    learner_seconds: float
    transfer_seconds: float

    @property
    def step_seconds(self) -> float:
        return max(self.rollout_seconds, self.learner_seconds) + self.transfer_seconds


@dataclass(frozen=True)
class AsyncPlan:
    async_steps: int
    topology: Topology
    sampler_chips: int
    learner_mesh: tuple[int, int, int]
    advised: bool  # the split is the planner's advice (rollout.sampler_chips was 0)
    estimates: tuple[SplitEstimate, ...]  # every split considered, from the synchronous plan's times
    sampler: tuple[CompiledProgram, ...]
    learner: tuple[CompiledProgram, ...]
    transfer: WeightTransfer
    sync_step_seconds: float
    sync_rollout_seconds: float
    sync_learner_seconds: float

    @property
    def learner_chips(self) -> int:
        return self.topology.num_chips - self.sampler_chips

    def time(self, program: CompiledProgram, chips: int) -> ProgramTime:
        flops = (program.flops_per_chip * chips if not program.program.loops and program.flops_per_chip
                 else program.program.executed_flops)
        return program_time(self.topology.chip, chips, flops, program.hlo)

    @property
    def rollout_seconds(self) -> float:
        return sum(self.time(program, self.sampler_chips).lower for program in self.sampler)

    @property
    def learner_seconds(self) -> float:
        return sum(self.time(program, self.learner_chips).lower for program in self.learner)

    @property
    def step_seconds(self) -> float:
        return max(self.rollout_seconds, self.learner_seconds) + self.transfer.seconds

    @property
    def fits(self) -> bool:
        hbm = self.topology.chip.hbm_bytes
        return all(p.out_of_memory is None and p.total_bytes <= hbm for p in self.sampler + self.learner)


def weight_transfer(target: PlanTarget, topology: Topology, sampler_chips: int, group: int) -> WeightTransfer:
    """The policy's bf16 bytes to the sampler sub-mesh and the least time they take at ICI (module docstring)."""
    from tulu_jax.generation import sampling_layout

    chip = topology.chip
    policy = sampling_layout.sampling_weight_bytes(target.model)
    groups = max(sampler_chips // group, 1)
    cut_links = 2 * topology.num_chips // max(topology.shape)
    per_chip = -(-policy // group)
    seconds = max(policy / (cut_links * chip.ici_link_bandwidth),
                  chip.ici_seconds(per_chip, chip.dimensions))
    return WeightTransfer(policy * groups, policy, per_chip, group, cut_links, seconds)


def learner_mesh_config(target: PlanTarget, chips: int) -> sharding.MeshConfig:
    """The config's data and tensor axes over ``chips``, the rest over fsdp."""
    mesh = target.mesh
    data, tensor = max(mesh.data, 1), max(mesh.tensor, 1)
    if chips % (data * tensor):
        raise MeshError(f"{chips} learner chips do not split into data={data} × tensor={tensor}")
    return sharding.MeshConfig(data=data, fsdp=chips // (data * tensor), tensor=tensor)


def valid_splits(target: PlanTarget, topology: Topology) -> list[int]:
    """Sampler chip counts of whole VMs whose learner mesh holds the rollout rows evenly."""
    config = target.stage_config
    rows = config.rollout.responses_per_step
    micro_rows = rows // (config.ppo.minibatches * config.ppo.micro_batches)
    step = topology.chip.chips_per_vm if topology.num_chips > topology.chip.chips_per_vm else 1
    splits = []
    for sampler_chips in range(step, topology.num_chips, step):
        try:
            mesh = learner_mesh_config(target, topology.num_chips - sampler_chips)
        except MeshError:
            continue
        batch_ways = mesh.data * mesh.fsdp
        if rows % batch_ways == 0 and micro_rows % batch_ways == 0 and rows % sampler_chips == 0:
            splits.append(sampler_chips)
    return splits


def estimate_splits(target: PlanTarget, topology: Topology, rollout_seconds: float, learner_seconds: float,
                    group: int) -> list[SplitEstimate]:
    """Every valid split's step time from the synchronous plan's times on all chips, scaled to its chips."""
    chips = topology.num_chips
    return [SplitEstimate(s, rollout_seconds * chips / s, learner_seconds * chips / (chips - s),
                          weight_transfer(target, topology, s, min(group, s)).seconds)
            for s in valid_splits(target, topology)]


def plan_async(target: PlanTarget, plan) -> AsyncPlan:
    """The asynchronous plan beside the synchronous ``plan`` (a ``report.Plan`` of the same target and slice)."""
    from tulu_jax.planning.rlvr_programs import learner_programs
    from tulu_jax.planning.sampling_programs import sampling_layout_programs

    config, topology = target.stage_config, plan.topology
    rollout = config.rollout
    sync_sampler = [p for p in plan.programs if p.program.decode is not None and not p.program.decode.get("reshard")]
    sync_rollout = sum(plan.time(p).lower for p in plan.programs if p.program.decode is not None)
    sampler_only = sum(plan.time(p).lower for p in sync_sampler)
    sync_learner = plan.step_seconds - sync_rollout
    group = sync_sampler[0].program.decode.get("group", 1) if sync_sampler else 1
    estimates = estimate_splits(target, topology, sampler_only, sync_learner, group)
    if rollout.sampler_chips:
        if rollout.sampler_chips not in valid_splits(target, topology):
            raise ConfigError(
                f"rollout.sampler_chips={rollout.sampler_chips} is not a split of {topology.requested} "
                f"({topology.num_chips} chips) in whole VMs whose learner mesh holds the rows; valid: "
                f"{', '.join(map(str, valid_splits(target, topology))) or 'none'}"
            )
        sampler_chips, advised = rollout.sampler_chips, False
    else:
        if not estimates:
            raise MeshError(f"no split of {topology.requested} into a sampler and a learner sub-mesh holds the "
                            f"{rollout.responses_per_step} rollout rows evenly")
        sampler_chips, advised = min(estimates, key=lambda e: e.step_seconds).sampler_chips, True

    devices = topology_devices(topology)
    learner_config = learner_mesh_config(target, topology.num_chips - sampler_chips)
    learner_target = dataclasses.replace(target, stage_config=dataclasses.replace(config, mesh=learner_config))
    learner_mesh = sharding.make_mesh(learner_config, devices[sampler_chips:])
    tensor = target.mesh.tensor if sampler_chips % max(target.mesh.tensor, 1) == 0 else 1
    sampler_mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=tensor), devices[:sampler_chips])

    learner, learner_list = learner_programs(learner_target, learner_mesh)
    sampler_list = sampling_layout_programs(target, sampler_mesh, learner.param_shapes["policy"], {},
                                            beside_learner=False)
    chip = topology.chip
    sampler = tuple(compile_program(p, chip) for p in sampler_list)
    learner_compiled = tuple(compile_program(p, chip) for p in learner_list)
    group = sampler_list[0].decode.get("group", 1)
    return AsyncPlan(
        rollout.async_steps, topology, sampler_chips,
        tuple(learner_mesh.shape[axis] for axis in sharding.MESH_AXES), advised, tuple(estimates), sampler,
        learner_compiled, weight_transfer(target, topology, sampler_chips, group), plan.step_seconds,
        sync_rollout, sync_learner,
    )


def render_async(plan: AsyncPlan) -> str:
    """The lines ``tulu-jax plan`` prints for ``rollout.async_steps >= 1``."""
    data, fsdp, tensor = plan.learner_mesh
    transfer = plan.transfer
    how = "advised" if plan.advised else "rollout.sampler_chips"
    lines = [
        f"asynchronous RLVR (rollout.async_steps={plan.async_steps}; compile-only plan, the runner is not built): "
        f"sampler {plan.sampler_chips} chips, learner {plan.learner_chips} chips "
        f"(data×fsdp×tensor = {data}×{fsdp}×{tensor}) [{how}]",
        "HBM per chip (GiB)   arguments  outputs    temps  resident     peak  chips  time per call (lower – upper)",
    ]
    for programs, chips in ((plan.sampler, plan.sampler_chips), (plan.learner, plan.learner_chips)):
        for program in programs:
            if program.out_of_memory is not None:
                lines.append(f"  {program.name:<18} the compiler refused: {program.out_of_memory}")
                continue
            time = plan.time(program, chips)
            outputs = program.output_bytes - program.alias_bytes
            lines.append(
                f"  {program.name:<18} {program.argument_bytes / GIB:9.2f} {outputs / GIB:8.2f} "
                f"{program.temp_bytes / GIB:8.2f} {program.resident_bytes / GIB:9.2f} "
                f"{program.total_bytes / GIB:8.2f}  {chips:5d}  {time.lower:.3f} – {time.upper:.3f} s "
                f"(bound by {time.bound_by})")
    lines += [
        "  " + ("FITS" if plan.fits else "DOES NOT FIT") + f" on {plan.topology.chip.hbm_bytes / GIB:.2f} GiB HBM per chip",
        f"  weight transfer  policy {transfer.policy_bytes / GB:.2f} GB bf16 after each update: "
        f"{transfer.per_chip_bytes / GB:.2f} GB per sampler chip (groups of {transfer.group}), "
        f"{transfer.total_bytes / GB:.2f} GB in all; >= {transfer.seconds * 1e3:.1f} ms at ICI "
        f"({transfer.cut_links} links across the cut; a formula, no transfer program yet)",
        f"  step         synchronous {plan.sync_step_seconds:.2f} s (rollout {plan.sync_rollout_seconds:.2f} + learner "
        f"{plan.sync_learner_seconds:.2f}); asynchronous {plan.step_seconds:.2f} s = max(rollout "
        f"{plan.rollout_seconds:.2f}, learner {plan.learner_seconds:.2f}) + transfer {transfer.seconds:.3f} "
        f"({plan.sync_step_seconds / plan.step_seconds:.2f}× if the sub-meshes overlap fully: unmeasured)",
    ]
    if plan.estimates:
        best = min(plan.estimates, key=lambda e: e.step_seconds)
        shown = sorted(plan.estimates, key=lambda e: e.step_seconds)[:5]
        lines.append("  split advice (synchronous times scaled to the chips; lower bounds): " + "; ".join(
            f"{e.sampler_chips}+{plan.topology.num_chips - e.sampler_chips} chips {e.step_seconds:.2f} s "
            f"(rollout {e.rollout_seconds:.2f}, learner {e.learner_seconds:.2f})" for e in shown)
            + f"; advised rollout.sampler_chips={best.sampler_chips}")
    return "\n".join(lines)


def async_steps_of(target: PlanTarget) -> int:
    """``rollout.async_steps`` of an RLVR target, else 0."""
    if target.stage != "rlvr":
        return 0
    return target.stage_config.rollout.async_steps


__all__ = ["AsyncPlan", "SplitEstimate", "WeightTransfer", "async_steps_of", "plan_async", "render_async",
           "weight_transfer"]
