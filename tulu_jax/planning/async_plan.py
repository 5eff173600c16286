"""The plan of asynchronous RLVR (``rollout.async_steps >= 1``): the slice split into a sampler sub-mesh and a
learner sub-mesh, the weight transfer between them after each update, and the step time against the
synchronous plan's.

- **Split.** ``rollout.sampler_chips``, or the advice. The runner splits every VM alike
  (``distributed.sub_meshes.split_devices``: each process gives its first chips to the sampler), so a split
  is ``VMs × s`` sampler chips for ``s`` below the chips of a VM. The advice: the synchronous plan's sampler
  and learner times on all N chips, each scaled to the chips it would get (rollout × N/S, learner × N/(N−S):
  decode rows and training tokens spread over the chips), the split with the smallest
  ``max(rollout, learner) + transfer`` among those whose learner mesh divides the rollout rows. The chosen
  split is then compiled: the sampler program on its S chips (only its bf16 weights resident there) and the
  learner's prepare and update on the other N−S (the config's ``mesh.tensor``, the rest over fsdp), each
  measured like any other program.
- **Transfer**, as the runner does it (``stages/rlvr/async_rollouts.AsyncRollouts.sampler_weights``): a
  compiled ``weight staging`` program on the learner's chips reshards the policy into the sampling layout
  (bf16, groups of the sampler's size; its all-gathers read from its HLO like any program's), then every
  sampler chip receives its share (policy / group) from a learner chip of its own VM, device to device over
  one ICI link (a learner chip serving ``c`` sampler chips sends ``c`` shares). Transfer time = the staging
  program's lower bound + ``c × share / link``. The advice, before anything is compiled, scales the
  synchronous plan's ``sampler reshard`` (all N chips) to the learner's N−S chips instead.
- **Step time.** Synchronous: the synchronous plan's lower bound (sampler reshard, sampler, prepare, update in
  turn). Asynchronous: ``max(rollout, learner) + transfer`` with the sub-meshes' compiled programs, assuming
  the two overlap fully, which no TPU run has checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from tulu_jax import sharding
from tulu_jax.distributed.sub_meshes import split_devices
from tulu_jax.errors import ConfigError, MeshError
from tulu_jax.planning.chips import GB, GIB, Topology
from tulu_jax.planning.compile import CompiledProgram, compile_program
from tulu_jax.planning.devices import topology_devices
from tulu_jax.planning.step_time import ProgramTime, program_time
from tulu_jax.planning.target import PlanTarget


@dataclass(frozen=True)
class WeightTransfer:
    total_bytes: int  # what the sampler sub-mesh holds of the policy in all: one bf16 copy per group
    policy_bytes: int  # one bf16 copy
    per_chip_bytes: int  # one sampler chip's share: policy / group
    group: int
    shares_per_learner_chip: int  # sampler chips one learner chip of a VM serves
    staging_seconds: float  # the staging reshard on the learner's chips (compiled, or scaled from the sync plan)
    copy_seconds: float  # the shard copies within each VM, over one ICI link
    staging: Optional[CompiledProgram] = None  # the compiled staging program (None: an estimate for the advice)

    @property
    def seconds(self) -> float:
        return self.staging_seconds + self.copy_seconds


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
        staging = (self.transfer.staging,) if self.transfer.staging is not None else ()
        return all(p.out_of_memory is None and p.total_bytes <= hbm for p in self.sampler + self.learner + staging)


def weight_transfer(target: PlanTarget, topology: Topology, sampler_chips: int, group: int, staging_seconds: float,
                    staging: Optional[CompiledProgram] = None) -> WeightTransfer:
    """The policy's bf16 bytes to the sampler sub-mesh and the least time they take (module docstring)."""
    from tulu_jax.generation import sampling_layout

    vms = topology.num_hosts
    sampler_per_vm = sampler_chips // vms
    learner_per_vm = topology.num_chips // vms - sampler_per_vm
    policy = sampling_layout.sampling_weight_bytes(target.model)
    per_chip = -(-policy // group)
    shares = -(-sampler_per_vm // max(learner_per_vm, 1))
    copy = shares * per_chip / topology.chip.ici_link_bandwidth
    return WeightTransfer(policy * max(sampler_chips // group, 1), policy, per_chip, group, shares, staging_seconds,
                          copy, staging)


def learner_mesh_config(target: PlanTarget, chips: int) -> sharding.MeshConfig:
    """The config's data and tensor axes over ``chips``, the rest over fsdp."""
    mesh = target.mesh
    data, tensor = max(mesh.data, 1), max(mesh.tensor, 1)
    if chips % (data * tensor):
        raise MeshError(f"{chips} learner chips do not split into data={data} × tensor={tensor}")
    return sharding.MeshConfig(data=data, fsdp=chips // (data * tensor), tensor=tensor)


def valid_splits(target: PlanTarget, topology: Topology) -> list[int]:
    """Sampler chip counts the runner can build (the same number from every VM) whose learner mesh holds the
    rollout rows evenly."""
    config = target.stage_config
    rows = config.rollout.responses_per_step
    micro_rows = rows // (config.ppo.minibatches * config.ppo.micro_batches)
    vms = topology.num_hosts
    splits = []
    for sampler_chips in range(vms, topology.num_chips, vms):
        try:
            mesh = learner_mesh_config(target, topology.num_chips - sampler_chips)
        except MeshError:
            continue
        batch_ways = mesh.data * mesh.fsdp
        if rows % batch_ways == 0 and micro_rows % batch_ways == 0 and rows % sampler_chips == 0:
            splits.append(sampler_chips)
    return splits


def estimate_splits(target: PlanTarget, topology: Topology, rollout_seconds: float, learner_seconds: float,
                    reshard_seconds: float, group: int) -> list[SplitEstimate]:
    """Every valid split's step time from the synchronous plan's times on all chips, scaled to its chips."""
    chips = topology.num_chips
    return [SplitEstimate(s, rollout_seconds * chips / s, learner_seconds * chips / (chips - s),
                          weight_transfer(target, topology, s, min(group, s),
                                          reshard_seconds * chips / (chips - s)).seconds)
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
    estimates = estimate_splits(target, topology, sampler_only, sync_learner, sync_rollout - sampler_only, group)
    if rollout.sampler_chips:
        if rollout.sampler_chips not in valid_splits(target, topology):
            raise ConfigError(
                f"rollout.sampler_chips={rollout.sampler_chips} is not a split of {topology.requested} "
                f"({topology.num_chips} chips, {topology.num_hosts} VMs, each giving the sampler the same number "
                f"of its chips) whose learner mesh holds the rows; valid: "
                f"{', '.join(map(str, valid_splits(target, topology))) or 'none'}"
            )
        sampler_chips, advised = rollout.sampler_chips, False
    else:
        if not estimates:
            raise MeshError(f"no split of {topology.requested} into a sampler and a learner sub-mesh holds the "
                            f"{rollout.responses_per_step} rollout rows evenly")
        sampler_chips, advised = min(estimates, key=lambda e: e.step_seconds).sampler_chips, True

    sampler_devices, learner_devices = split_devices(sampler_chips, topology_devices(topology))
    learner_config = learner_mesh_config(target, topology.num_chips - sampler_chips)
    learner_target = dataclasses.replace(target, stage_config=dataclasses.replace(config, mesh=learner_config))
    learner_mesh = sharding.make_mesh(learner_config, learner_devices)
    tensor = target.mesh.tensor if sampler_chips % max(target.mesh.tensor, 1) == 0 else 1
    sampler_mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=tensor), sampler_devices)

    learner, learner_list = learner_programs(learner_target, learner_mesh)
    sampler_list = sampling_layout_programs(target, sampler_mesh, learner.param_shapes["policy"], {},
                                            beside_learner=False)
    chip = topology.chip
    sampler = tuple(compile_program(p, chip) for p in sampler_list)
    learner_compiled = tuple(compile_program(p, chip) for p in learner_list)
    group = sampler_list[0].decode.get("group", 1)
    staging = compile_program(staging_program(target, learner_mesh, learner, group), chip)
    staging_seconds = program_time(chip, learner_mesh.size, staging.program.executed_flops, staging.hlo).lower
    return AsyncPlan(
        rollout.async_steps, topology, sampler_chips,
        tuple(learner_mesh.shape[axis] for axis in sharding.MESH_AXES), advised, tuple(estimates), sampler,
        learner_compiled, weight_transfer(target, topology, sampler_chips, group, staging_seconds, staging),
        plan.step_seconds, sync_rollout, sync_learner,
    )


def staging_program(target: PlanTarget, learner_mesh, learner, group: int):
    """The runner's first half of the transfer: the policy resharded into the sampling layout on the learner's
    chips, in groups of the sampler's size, beside the learner's state."""
    from tulu_jax.generation import sampling_layout
    from tulu_jax.generation.sampler import param_shardings
    from tulu_jax.planning.program import Program, abstract

    staging_mesh = sharding.sampling_mesh(learner_mesh, group)
    state = learner.abstract_state()
    policy = abstract(learner.param_shapes["policy"], param_shardings(target.model, learner_mesh))
    resident = {"opt_state": state.opt_state, **{k: v for k, v in state.params.items() if k != "policy"}}
    return Program("weight staging", sampling_layout.resharder(target.model, staging_mesh), (policy,), 0, 0.0, 0.0,
                   resident=resident, decode={"reshard": True, "group": group}, mesh=learner_mesh)


def render_async(plan: AsyncPlan) -> str:
    """The lines ``tulu-jax plan`` prints for ``rollout.async_steps >= 1``."""
    data, fsdp, tensor = plan.learner_mesh
    transfer = plan.transfer
    how = "advised" if plan.advised else "rollout.sampler_chips"
    lines = [
        f"asynchronous RLVR (rollout.async_steps={plan.async_steps}; compile-only plan): "
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
        f"{transfer.total_bytes / GB:.2f} GB in all; >= {transfer.seconds * 1e3:.1f} ms = staging on the learner "
        f"{transfer.staging_seconds * 1e3:.1f} ms (compiled{_staging_ici(transfer)}) + copies within each VM "
        f"{transfer.copy_seconds * 1e3:.1f} ms ({transfer.shares_per_learner_chip} share(s) per learner chip "
        f"over one ICI link)",
        _step_line(plan),
    ]
    if plan.estimates:
        best = min(plan.estimates, key=lambda e: e.step_seconds)
        shown = sorted(plan.estimates, key=lambda e: e.step_seconds)[:5]
        lines.append("  split advice (synchronous times scaled to the chips; lower bounds): " + "; ".join(
            f"{e.sampler_chips}+{plan.topology.num_chips - e.sampler_chips} chips {e.step_seconds:.2f} s "
            f"(rollout {e.rollout_seconds:.2f}, learner {e.learner_seconds:.2f})" for e in shown)
            + f"; advised rollout.sampler_chips={best.sampler_chips}")
    return "\n".join(lines)


def _step_line(plan: AsyncPlan) -> str:
    synchronous = (f"  step         synchronous {plan.sync_step_seconds:.2f} s (rollout {plan.sync_rollout_seconds:.2f} + "
                   f"learner {plan.sync_learner_seconds:.2f}); ")
    refused = [p.name for p in plan.sampler + plan.learner if p.out_of_memory is not None]
    if refused:
        return synchronous + (f"asynchronous: none on this split, the compiler refused {', '.join(refused)} on its "
                              "sub-mesh (raise ppo.micro_batches, or give that side more chips with "
                              "rollout.sampler_chips)")
    return synchronous + (f"asynchronous {plan.step_seconds:.2f} s = max(rollout {plan.rollout_seconds:.2f}, learner "
                          f"{plan.learner_seconds:.2f}) + transfer {plan.transfer.seconds:.3f} "
                          f"({plan.sync_step_seconds / plan.step_seconds:.2f}× if the sub-meshes overlap fully: "
                          "unmeasured)")


def _staging_ici(transfer: WeightTransfer) -> str:
    hlo = transfer.staging.hlo if transfer.staging is not None else None
    return "" if hlo is None else f"; ICI {hlo.ici_bytes / GB:.2f} GB, HBM {hlo.hbm_bytes / GB:.2f} GB per chip"


def async_steps_of(target: PlanTarget) -> int:
    """``rollout.async_steps`` of an RLVR target, else 0."""
    if target.stage != "rlvr":
        return 0
    return target.stage_config.rollout.async_steps


__all__ = ["AsyncPlan", "SplitEstimate", "WeightTransfer", "async_steps_of", "plan_async", "render_async",
           "weight_transfer"]
