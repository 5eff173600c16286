"""The plan of one train step on one TPU slice: memory per chip against HBM, FLOPs, step time and MFU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tulu_jax.planning.chips import GIB, Topology
from tulu_jax.planning.compile import CompiledStep
from tulu_jax.planning.estimate import matmul_params, training_flops
from tulu_jax.planning.target import PlanTarget


@dataclass(frozen=True)
class Plan:
    target: PlanTarget
    topology: Topology
    compiled: CompiledStep

    @property
    def hbm_bytes(self) -> int:
        return self.topology.chip.hbm_bytes

    @property
    def fits(self) -> bool:
        return self.compiled.out_of_memory is None and self.compiled.total_bytes <= self.hbm_bytes

    @property
    def over_by_bytes(self) -> Optional[int]:
        """How much more than one chip's HBM the step needs (None when it fits or the compiler did not say)."""
        if self.fits:
            return None
        if self.compiled.out_of_memory is not None and self.compiled.required_bytes is None:
            return None
        return self.compiled.total_bytes - self.hbm_bytes

    @property
    def estimated_flops(self) -> dict[str, float]:
        return training_flops(self.target.model, self.target.batch_size, self.target.max_length)

    @property
    def compiled_flops(self) -> Optional[float]:
        """FLOPs of the whole step on all chips as XLA counts them (it counts one chip's partitioned program)."""
        if self.compiled.flops_per_chip is None:
            return None
        return self.compiled.flops_per_chip * self.topology.num_chips

    @property
    def compiled_count_is_complete(self) -> bool:
        """XLA's cost analysis counts a while-loop body once: a scanned layer stack, micro-batch scan or
        chunked logits loop make its figure a fraction of the work actually run."""
        config = self.target.stage_config
        chunks = -(-self.target.max_length // config.loss.logits_chunk_size)
        return not self.target.model.scan_layers and self.target.micro_batches == 1 and chunks == 1

    @property
    def executed_flops(self) -> float:
        """FLOPs the chips run per step: XLA's count when complete, else the estimate plus remat's extra forward."""
        if self.compiled_count_is_complete and self.compiled_flops:
            return self.compiled_flops
        estimate = self.estimated_flops["total"]
        return estimate * (8.0 / 6.0) if self.target.model.remat != "none" else estimate

    @property
    def step_seconds(self) -> float:
        """A lower bound: the executed FLOPs at the slice's bf16 peak."""
        return self.executed_flops / (self.topology.chip.peak_bf16_flops * self.topology.num_chips)

    @property
    def mfu(self) -> float:
        """The MFU ceiling: model FLOPs (6·N·T + attention) over executed FLOPs, reached only at peak speed."""
        peak = self.topology.chip.peak_bf16_flops * self.topology.num_chips
        return self.estimated_flops["total"] / (self.step_seconds * peak)


def _gib(size: float) -> str:
    return f"{size / GIB:8.2f} GiB"


def _flops(value: float) -> str:
    return f"{value:.3e}"


def render(plan: Plan) -> str:
    """The human-readable plan ``tulu-jax plan`` prints."""
    target, topology, compiled = plan.target, plan.topology, plan.compiled
    data, fsdp, tensor = compiled.mesh_shape
    lines = [
        f"plan for {target.source} (stage {target.stage}) on {topology.requested}: "
        f"{topology.num_chips} × TPU {topology.chip.name} ({topology.libtpu_name})",
        f"  model        {target.model.num_params() / 1e9:.2f}B parameters ({target.model.param_dtype} weights, "
        f"{target.model.compute_dtype} compute, remat {target.model.remat})",
        f"  mesh         data×fsdp×tensor = {data}×{fsdp}×{tensor}",
        f"  batch        {target.batch_size} sequences × {target.max_length} tokens per optimizer step "
        f"({target.micro_batches} micro-batch{'es' if target.micro_batches > 1 else ''})",
        f"  compiled in  {compiled.compile_seconds:.1f} s",
        "memory per chip:",
    ]
    if compiled.out_of_memory is None:
        lines += [
            f"  arguments    {_gib(compiled.argument_bytes)}  (train state and batch shard)",
            f"  outputs      {_gib(compiled.output_bytes)}  ({_gib(compiled.alias_bytes).strip()} of it in donated buffers)",
            f"  temporaries  {_gib(compiled.temp_bytes)}",
            f"  code         {_gib(compiled.code_bytes)}",
        ]
    else:
        lines.append(f"  the compiler refused: {compiled.out_of_memory}")
    hbm = plan.hbm_bytes
    if plan.fits:
        lines.append(
            f"  total        {_gib(compiled.total_bytes)} of {hbm / GIB:.2f} GiB HBM: FITS "
            f"({(hbm - compiled.total_bytes) / GIB:.2f} GiB free, {compiled.total_bytes / hbm:.0%} used)"
        )
    elif plan.over_by_bytes is not None:
        lines.append(
            f"  total        {_gib(compiled.total_bytes)} of {hbm / GIB:.2f} GiB HBM: DOES NOT FIT, over by "
            f"{plan.over_by_bytes / GIB:.2f} GiB ({compiled.total_bytes / hbm:.1f}× the HBM); use a larger slice, "
            "more micro-batches, a smaller batch, or remat"
        )
    else:
        lines.append(f"  DOES NOT FIT in {hbm / GIB:.2f} GiB HBM (the compiler did not say by how much)")
    estimate = plan.estimated_flops
    lines += [
        "FLOPs per optimizer step (whole slice):",
        f"  estimate     {_flops(estimate['total'])}  = 6·N·T {_flops(estimate['dense'])} (N = "
        f"{matmul_params(target.model) / 1e9:.2f}B matmul params) + attention {_flops(estimate['attention'])}",
    ]
    if plan.compiled_flops is not None:
        note = (
            f"{plan.compiled_flops / estimate['total']:.2f}× the estimate"
            if plan.compiled_count_is_complete
            else "loop bodies counted once (scanned layers, micro-batches, logit chunks), so not the step total"
        )
        lines.append(f"  XLA count    {_flops(plan.compiled_flops)}  ({note})")
    lines += [
        f"  executed     {_flops(plan.executed_flops)}  "
        + ("(XLA's count)" if plan.compiled_count_is_complete else f"(estimate{' + remat forward' if target.model.remat != 'none' else ''})"),
        "time (lower bound: executed FLOPs at the bf16 peak):",
        f"  step         {plan.step_seconds:.3f} s at {topology.chip.peak_bf16_flops / 1e12:.0f} TFLOP/s per chip "
        f"({target.tokens_per_step / plan.step_seconds:,.0f} tokens/s)",
        f"  MFU ceiling  {plan.mfu:.1%} (model FLOPs / executed FLOPs; real runs reach a fraction of peak)",
    ]
    return "\n".join(lines)
