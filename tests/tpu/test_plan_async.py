"""``tulu-jax plan`` for asynchronous RLVR (rollout.async_steps >= 1): the sampler's program on a sampler
sub-mesh, the learner's on the rest, the weight transfer, and the step time against the synchronous plan."""

from __future__ import annotations

import pytest

from tests.tpu.test_plan import TINY_RLVR, _write, needs_libtpu
from tulu_jax.cli import main
from tulu_jax.errors import ConfigError
from tulu_jax.planning import plan_stage


@pytest.fixture(scope="module")
def rlvr_config(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("plan_async"), "tiny_rlvr.yaml", TINY_RLVR)


@pytest.fixture(scope="module")
def async_plan(rlvr_config):
    return plan_stage(rlvr_config, "v5p-16", ["rollout.async_steps=1"])  # 8 chips on 2 VMs


@needs_libtpu
def test_the_sampler_and_the_learner_are_planned_on_their_own_chips(async_plan):
    plan = async_plan.asynchronous
    assert plan is not None and plan.async_steps == 1 and plan.advised
    assert (plan.sampler_chips, plan.learner_chips, plan.learner_mesh) == (4, 4, (1, 4, 1))  # 2 of each VM's 4
    assert [p.name for p in plan.sampler] == ["sampler"]
    assert [p.name for p in plan.learner] == ["learner prepare", "learner update"] and plan.fits
    # nothing of the learner stays on the sampler's chips; the learner's state is split over 4 chips, not 8
    sampler, = plan.sampler
    assert sampler.resident_bytes == 0
    sync_update = next(p for p in async_plan.programs if p.name == "learner update")
    assert plan.learner[1].argument_bytes > 1.8 * sync_update.argument_bytes


@needs_libtpu
def test_the_weight_transfer_and_the_step_times(async_plan):
    plan = async_plan.asynchronous
    model, chip = async_plan.target.model, async_plan.topology.chip
    transfer = plan.transfer
    policy = model.num_params() * 2  # bf16, the sampler's layout
    assert transfer.policy_bytes == policy
    assert transfer.per_chip_bytes == -(-policy // transfer.group)
    assert transfer.total_bytes == policy * (plan.sampler_chips // transfer.group)
    # the staging reshard is compiled on the learner's 4 chips and gathers the fsdp-split policy there
    assert transfer.staging is not None and transfer.staging.name == "weight staging"
    assert transfer.staging.hlo.ici_bytes > 0 and transfer.staging_seconds > 0
    # v5p-16: 2 VMs of 4 chips, 2 to the sampler and 2 to the learner on each: one share per learner chip
    assert transfer.shares_per_learner_chip == 1
    assert transfer.copy_seconds == pytest.approx(transfer.per_chip_bytes / chip.ici_link_bandwidth)
    assert transfer.seconds == pytest.approx(transfer.staging_seconds + transfer.copy_seconds)
    assert plan.sync_step_seconds == pytest.approx(async_plan.step_seconds)
    assert plan.step_seconds == pytest.approx(max(plan.rollout_seconds, plan.learner_seconds) + transfer.seconds)
    assert plan.rollout_seconds > 0 and plan.learner_seconds > 0
    assert {e.sampler_chips for e in plan.estimates} <= {2, 4, 6} and 4 in {e.sampler_chips for e in plan.estimates}


@needs_libtpu
def test_plan_prints_the_async_plan_and_sync_configs_have_none(rlvr_config, capsys):
    assert main(["plan", "--config", str(rlvr_config), "--topology", "v5p-16", "rollout.async_steps=1"]) == 0
    output = capsys.readouterr().out
    assert "asynchronous RLVR (rollout.async_steps=1" in output and "sampler 4 chips, learner 4 chips" in output
    assert "weight transfer" in output and "GB per sampler chip" in output and "staging on the learner" in output
    assert "synchronous" in output and "= max(rollout" in output and "advised rollout.sampler_chips=4" in output
    assert plan_stage(rlvr_config, "v5p-16").asynchronous is None


@needs_libtpu
def test_a_sampler_split_that_does_not_hold_the_rows_is_refused(rlvr_config):
    with pytest.raises(ConfigError, match="rollout.sampler_chips=3 is not a split of v5p-16"):
        plan_stage(rlvr_config, "v5p-16", ["rollout.async_steps=1", "rollout.sampler_chips=3"])
