"""The plan of a stage on one TPU slice: every program's memory per chip against HBM, the peak over programs,
time per program from compute, HBM and ICI (``step_time``: a lower bound and a serial upper bound), the
estimated MFU and tokens/s/chip at each, the sampler's decode step, and host RAM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tulu_jax.planning.chips import GIB, Topology
from tulu_jax.planning.compile import CompiledProgram
from tulu_jax.planning.step_time import ProgramTime, program_time
from tulu_jax.planning.host_memory import HostMemory
from tulu_jax.planning.target import PlanTarget


@dataclass(frozen=True)
class Plan:
    target: PlanTarget
    topology: Topology
    mesh_shape: tuple[int, int, int]
    programs: tuple[CompiledProgram, ...]
    host: HostMemory
    asynchronous: Optional[Any] = None  # an async_plan.AsyncPlan when rollout.async_steps >= 1

    @property
    def hbm_bytes(self) -> int:
        return self.topology.chip.hbm_bytes

    @property
    def peak(self) -> CompiledProgram:
        """The program with the largest footprint per chip."""
        return max(self.programs, key=lambda program: (program.out_of_memory is not None, program.total_bytes))

    @property
    def fits(self) -> bool:
        return all(p.out_of_memory is None and p.total_bytes <= self.hbm_bytes for p in self.programs)

    @property
    def over_by_bytes(self) -> Optional[int]:
        """How much more than one chip's HBM the largest program needs (None when it fits or is unknown)."""
        if self.fits:
            return None
        peak = self.peak
        if peak.out_of_memory is not None and peak.required_bytes is None:
            return None
        return peak.total_bytes - self.hbm_bytes

    # --- time -------------------------------------------------------------------------------------------
    @property
    def slice_flops(self) -> float:
        return self.topology.chip.peak_bf16_flops * self.topology.num_chips

    def executed_flops(self, program: CompiledProgram) -> float:
        """XLA's count when it covers the whole program (no loops), else the formula's."""
        if not program.program.loops and program.flops_per_chip:
            return program.flops_per_chip * self.topology.num_chips
        return program.program.executed_flops

    def time(self, program: CompiledProgram) -> ProgramTime:
        """Compute, HBM and ICI time per call (``step_time``)."""
        return program_time(self.topology.chip, self.topology.num_chips, self.executed_flops(program), program.hlo)

    def seconds(self, program: CompiledProgram) -> float:
        """The lower bound of one call: the largest of compute, HBM and ICI time."""
        return self.time(program).lower

    @property
    def in_step(self) -> list[CompiledProgram]:
        return [program for program in self.programs if program.program.calls_per_step > 0]

    @property
    def step_seconds(self) -> float:
        """Lower bound of one step: each program's largest term, the programs one after another."""
        return sum(program.program.calls_per_step * self.time(program).lower for program in self.in_step)

    @property
    def step_seconds_upper(self) -> float:
        """Serial upper bound of one step: every term of every program added up."""
        return sum(program.program.calls_per_step * self.time(program).upper for program in self.in_step)

    @property
    def model_flops(self) -> float:
        return sum(program.program.calls_per_step * program.program.model_flops for program in self.in_step)

    @property
    def mfu(self) -> float:
        """Estimated MFU at the step time's lower bound (the best the model allows)."""
        return self.model_flops / (self.step_seconds * self.slice_flops)

    @property
    def mfu_upper_time(self) -> float:
        """Estimated MFU at the serial upper bound of the step time."""
        return self.model_flops / (self.step_seconds_upper * self.slice_flops)

    @property
    def tokens_per_step(self) -> int:
        """Token positions one optimizer step (one rollout step for RLVR) trains on."""
        learner = [program for program in self.programs if program.program.decode is None]
        first = self.in_step[0] if self.target.stage != "rlvr" else learner[0]
        return first.program.tokens

    @property
    def tokens_per_second_per_chip(self) -> float:
        return self.tokens_per_step / self.step_seconds / self.topology.num_chips

    @property
    def tokens_per_second_per_chip_upper_time(self) -> float:
        return self.tokens_per_step / self.step_seconds_upper / self.topology.num_chips

    # --- refusal ----------------------------------------------------------------------------------------
    def advice(self) -> str:
        """The knob that helps most for the largest program."""
        peak = self.peak
        config = self.target.stage_config
        state_bytes = peak.argument_bytes + peak.resident_bytes
        # The arguments and resident buffers alone over HBM: only more chips (or fewer bytes per parameter) help.
        resident_heavy = state_bytes > self.hbm_bytes or (
            peak.out_of_memory is None and state_bytes > max(peak.temp_bytes, 1) * 2)
        larger = "a larger slice or mesh axis (more chips over fsdp: the state per chip falls as 1/chips)"
        if peak.name == "sampler":
            return (f"a shorter rollout.max_new_tokens (now {config.rollout.max_new_tokens}) or fewer "
                    f"rollout.prompts_per_step: the KV cache grows with both; or {larger}")
        if peak.name == "learner update":
            if resident_heavy:
                return larger
            rows = config.rollout.responses_per_step // config.ppo.minibatches
            return self._micro_batches("ppo.micro_batches", rows, config.ppo.micro_batches, state_bytes, larger)
        if peak.name == "learner prepare":
            return f"a shorter rollout.max_new_tokens, fewer rollout.prompts_per_step, or {larger}"
        if resident_heavy:
            return f"{larger}; the arguments alone need {state_bytes / GIB:.2f} GiB per chip"
        if self.target.model.remat == "none":
            return "model.overrides.remat=full (activations are recomputed in the backward pass)"
        if peak.name == "reference pass":
            pairs = config.objective.reference_batch_size or config.training.batch_size // config.training.micro_batches
            return f"a smaller dpo.reference_batch_size (now {pairs})"
        training = config.training
        return self._micro_batches("training.micro_batches", training.batch_size, training.micro_batches,
                                   state_bytes, larger)

    def _micro_batches(self, key: str, rows: int, current: int, state_bytes: int, larger: str) -> str:
        """The fewest micro-batches whose activations (taken to fall as 1/micro-batches) fit beside the state,
        among the counts that keep every micro-batch a multiple of data×fsdp."""
        data, fsdp, _ = self.mesh_shape
        activations = max(self.peak.total_bytes - state_bytes, 1)
        room = self.hbm_bytes - state_bytes
        needed = current * activations / room if room > 0 else float("inf")
        valid = [count for count in range(current + 1, rows + 1)
                 if rows % count == 0 and (rows // count) % (data * fsdp) == 0]
        enough = [count for count in valid if count >= needed]
        if enough:
            return (f"{key}={enough[0]} (activations fall to about 1/{enough[0] // current} of "
                    f"{activations / GIB:.0f} GiB; every micro-batch stays a multiple of data×fsdp = {data * fsdp}), "
                    f"or {larger}")
        if valid:
            return f"{larger}; even {key}={valid[-1]} (the most that divide the rows) is not estimated to be enough"
        return f"{larger}; no {key} above {current} splits {rows} rows into multiples of data×fsdp = {data * fsdp}"

    def verdict(self) -> str:
        """One line: fits, or by how much it does not, in which program, and what to change."""
        hbm = self.hbm_bytes / GIB
        peak = self.peak
        if self.fits:
            return (f"FITS: peak {peak.total_bytes / GIB:.2f} of {hbm:.2f} GiB HBM per chip in the {peak.name} "
                    f"({(self.hbm_bytes - peak.total_bytes) / GIB:.2f} GiB free)")
        over = self.over_by_bytes
        amount = f"over by {over / GIB:.2f} GiB" if over is not None else "the compiler did not say by how much"
        return (f"DOES NOT FIT: the {peak.name} needs {peak.total_bytes / GIB:.2f} GiB per chip of {hbm:.2f} GiB HBM, "
                f"{amount}; what helps most: {self.advice()}")


def _gib(size: float) -> str:
    return f"{size / GIB:7.2f}"


def render(plan: Plan) -> str:
    """The human-readable plan ``tulu-jax plan`` prints."""
    target, topology = plan.target, plan.topology
    model = target.model
    data, fsdp, tensor = plan.mesh_shape
    origin = f" (shape from {target.model_origin})" if target.model_origin else ""
    lines = [
        f"plan for {target.source} (stage {target.stage}) on {topology.requested}: "
        f"{topology.num_chips} × TPU {topology.chip.name} ({topology.libtpu_name}), {topology.num_hosts} VM(s)",
        f"  model        {model.num_params() / 1e9:.2f}B parameters{origin} ({model.param_dtype} weights, "
        f"{model.compute_dtype} compute, remat {model.remat}, attention {model.attention})",
        f"  mesh         data×fsdp×tensor = {data}×{fsdp}×{tensor}",
        f"  work         {_work(target)}",
        "HBM per chip (GiB)   arguments  outputs    temps  resident     peak  compiled in",
    ]
    for program in plan.programs:
        if program.out_of_memory is None:
            outputs = program.output_bytes - program.alias_bytes
            lines.append(
                f"  {program.name:<18} {_gib(program.argument_bytes)}  {_gib(outputs)}  {_gib(program.temp_bytes)}  "
                f"{_gib(program.resident_bytes)}  {_gib(program.total_bytes)}  {program.compile_seconds:6.1f} s"
            )
        else:
            lines.append(f"  {program.name:<18} the compiler refused: {program.out_of_memory}")
    lines.append(f"  {plan.verdict()}")
    lines += _time_lines(plan)
    host = plan.host
    data_text = f"{host.data_bytes / GIB:.1f} GiB ({host.data_note})" if host.data_bytes is not None else host.data_note
    lines += [
        f"host RAM per VM ({host.host_ram_bytes / 1e9:.0f} GB on {topology.chip.name}):",
        f"  load {host.load_bytes / GIB:.1f} GiB ({host.load_note}); export {host.export_bytes / GIB:.1f} GiB "
        f"(largest tensor × 1.3, process 0); data {data_text}",
        f"  peak {host.peak_bytes / GIB:.1f} GiB: " + ("fits" if host.fits else "DOES NOT FIT in the VM's RAM"),
    ]
    if plan.asynchronous is not None:
        from tulu_jax.planning.async_plan import render_async

        lines.append(render_async(plan.asynchronous))
    return "\n".join(lines)


def _time_lines(plan: Plan) -> list[str]:
    """Per program: compute, HBM and ICI time per call and what it moves; the sampler's decode step; the step's
    bounds and the estimated MFU at each."""
    lines = ["time per call (estimates at peak rates: compute = FLOPs at the bf16 peak; HBM = bytes read and "
             "written per chip, from the HLO; ICI = bytes per chip over the links its groups span, from the HLO):"]
    for program in plan.programs:
        time = plan.time(program)
        flops = plan.executed_flops(program)
        source = "XLA's count" if not program.program.loops and program.flops_per_chip else "formula"
        when = "per step" if program.program.calls_per_step else "once, before training (per call)"
        parts = [f"compute {time.compute_seconds:.3f} s ({flops:.3e} FLOPs, {source})"]
        if program.hlo is not None:
            parts.append(f"HBM {time.hbm_seconds:.3f} s ({program.hlo.hbm_bytes / 1e9:,.1f} GB/chip)")
            parts.append(f"ICI {time.ici_seconds:.3f} s ({program.hlo.ici_bytes / 1e9:,.2f} GB/chip)")
        lines.append(f"  {program.name:<18} {time.lower:9.3f} – {time.upper:.3f} s {when} (bound by {time.bound_by}): "
                     + "; ".join(parts))
        if program.program.decode is not None and program.hlo is not None and program.hlo.longest_loop is not None:
            lines.append("  " + _decode_line(plan, program))
    rollout = [program for program in plan.programs if program.program.decode is not None]
    if rollout:
        low = sum(plan.time(program).lower for program in rollout)
        high = sum(plan.time(program).upper for program in rollout)
        lines.append(f"  rollout {low:.2f} – {high:.2f} s with ICI counted; learner {plan.step_seconds - low:.2f} – "
                     f"{plan.step_seconds_upper - high:.2f} s per rollout step")
    lines += [
        f"  step         {plan.step_seconds:.3f} s (lower bound) – {plan.step_seconds_upper:.3f} s (serial upper "
        f"bound), {plan.tokens_per_second_per_chip:,.0f} – {plan.tokens_per_second_per_chip_upper_time:,.0f} "
        f"tokens/s/chip ({plan.tokens_per_step:,} tokens per step)",
        f"  MFU estimate {plan.mfu:.1%} at the lower bound, {plan.mfu_upper_time:.1%} at the upper bound (model "
        f"FLOPs {plan.model_flops:.3e} per step over the slice's peak; an estimate, not a measurement)",
    ]
    return lines


def _decode_line(plan: Plan, program: CompiledProgram) -> str:
    loop = program.hlo.longest_loop
    steps = max(loop.trips, 1)
    chip = plan.topology.chip
    bound = "max_new_tokens" if program.program.decode.get("new") == loop.trips else "the HLO"
    gathers = (f"{loop.fsdp_gathers} fsdp all-gathers, {loop.fsdp_gather_bytes / steps / 1e9:.2f} GB"
               if loop.fsdp_gathers else "no fsdp all-gathers")
    return (f"  decode step: ICI {loop.ici_bytes / steps / 1e9:.3f} GB/chip ({loop.ici_seconds / steps * 1e3:.2f} ms; "
            f"{gathers}), HBM {loop.hbm_bytes / steps / 1e9:.2f} GB/chip "
            f"({loop.hbm_bytes / steps / chip.hbm_bandwidth * 1e3:.2f} ms), × {steps:,.0f} steps (bound: {bound})")


def _work(target: PlanTarget) -> str:
    config = target.stage_config
    if target.stage == "rlvr":
        rollout = config.rollout
        return (f"{rollout.responses_per_step} responses × ({config.data.max_prompt_len} prompt + "
                f"{rollout.max_new_tokens} new tokens) per rollout step; {config.ppo.epochs} epochs × "
                f"{config.ppo.minibatches} minibatches × {config.ppo.micro_batches} micro-batches; "
                f"{'PPO with a value model' if config.uses_value_model else 'no value model'}")
    training = config.training
    unit = "sequences" if target.stage == "sft" else "pairs (both sides in one forward)"
    extra = ""
    if target.stage == "dpo":
        extra = f"; reference {config.objective.reference}" if config.objective.uses_reference else "; no reference (simpo)"
    return (f"{training.batch_size} {unit} × {config.data.max_seq_len} tokens per optimizer step "
            f"({training.micro_batches} micro-batch{'es' if training.micro_batches > 1 else ''}){extra}")
