"""The one tensor plan (``hf/tensor_plan.py``) against transformers' own Llama, and its layouts slice by slice."""

import json

import jax
import numpy as np
import pytest
import transformers

from tests.models.hf_reference import tiny_hf_config
from tulu_jax.hf.layout import Layout
from tulu_jax.hf.tensor_plan import by_leaf, tensor_plan
from tulu_jax.models.config import from_hf_dict
from tulu_jax.models.params import param_shapes


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("scan_layers", [True, False], ids=["scan", "unrolled"])
def test_the_plan_names_and_shapes_every_tensor_transformers_holds(tied, scan_layers):
    hf_config = tiny_hf_config(tie_word_embeddings=tied)
    model = transformers.LlamaForCausalLM(hf_config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if tied:
        expected.pop("lm_head.weight")  # transformers lists the tied head; the checkpoint need not store it
    config = from_hf_dict(json.loads(hf_config.to_json_string())).replace(scan_layers=scan_layers)
    plan = tensor_plan(config)
    assert {tensor.name: tensor.hf_shape for tensor in plan} == expected
    shapes = param_shapes(config)
    leaves = by_leaf(plan)
    assert len(leaves) == len(jax.tree.leaves(shapes))  # every leaf of ours is planned
    for path, group in leaves.items():
        assert [tensor.layer for tensor in group] == (list(range(config.num_layers)) if len(group) > 1 else [None])


LAYOUTS = [Layout(), Layout(transposed=True), Layout(transposed=True, split_axis=1), Layout(transposed=True, split_axis=0)]
OUR_SHAPES = [(6, 4), (6, 4), (6, 3, 4), (3, 4, 6)]


@pytest.mark.parametrize("layout, our_shape", list(zip(LAYOUTS, OUR_SHAPES)), ids=["same", "linear", "heads_in",
                                                                                   "heads_out"])
def test_a_slice_read_and_a_piece_placed_agree_with_the_whole_conversion(layout, our_shape):
    hf_array = np.random.RandomState(0).randn(*layout.hf_shape(our_shape)).astype(np.float32)
    ours = layout.to_ours(hf_array, our_shape)
    assert ours.shape == our_shape
    np.testing.assert_array_equal(layout.to_hf(ours), hf_array)
    # A device's slice: half of every axis but head_dim (which the export requires whole).
    index = tuple(slice(dim // 2, dim) for dim in our_shape)
    if layout.split_axis is not None:
        index = index[: layout.split_axis + 1] + (slice(None),) + index[layout.split_axis + 2:]
    np.testing.assert_array_equal(layout.read(lambda *hf_index: hf_array[hf_index], our_shape, index), ours[index])
    rebuilt = np.zeros_like(hf_array)
    bounds = [s.indices(dim)[:2] for s, dim in zip(index, our_shape)]
    layout.place(rebuilt, our_shape, bounds, ours[index], "piece")
    assert np.count_nonzero(rebuilt) == ours[index].size
    np.testing.assert_array_equal(layout.to_ours(rebuilt, our_shape)[index], ours[index])
