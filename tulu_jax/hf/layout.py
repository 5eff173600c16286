"""How one of our arrays is laid out against the Hugging Face tensor behind it, both ways and by the slice.

HF stores a linear weight as ``[out, in]``; we store a kernel as ``[in..., out...]`` with heads split out. So
our array is the HF matrix, transposed or not, then one axis of it split into ``[outer, inner]`` (heads and
head_dim): exact in both directions. ``read`` makes a slice of ours from only the HF bytes behind it (the
sharded load); ``place`` writes a piece of ours into the HF array (the streamed export). Whole-array
conversion is the same two with the whole array as the slice, so the transform is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from tulu_jax.errors import CheckpointError

Bounds = list[tuple[int, int]]  # [start, stop) per axis of our array


@dataclass(frozen=True)
class Layout:
    transposed: bool = False
    split_axis: Optional[int] = None  # axis of the (transposed) matrix that our array splits in two

    def hf_shape(self, our_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The HF tensor shape behind an array of ours of ``our_shape``."""
        matrix = list(our_shape)
        if self.split_axis is not None:
            axis = self.split_axis
            matrix[axis : axis + 2] = [matrix[axis] * matrix[axis + 1]]
        return tuple(matrix[::-1] if self.transposed else matrix)

    def read(self, read_region: Callable[..., np.ndarray], our_shape: tuple[int, ...], our_index: tuple) -> np.ndarray:
        """``ours[our_index]`` (one slice per axis), from ``read_region(*hf_slices)``: the HF rectangle behind it."""
        bounds: Bounds = [index.indices(dim)[:2] for index, dim in zip(our_index, our_shape)]
        matrix_index = [slice(start, stop) for start, stop in self._matrix_bounds(bounds, our_shape)]
        region = read_region(*(matrix_index[::-1] if self.transposed else matrix_index))
        if self.transposed:
            region = region.T
        if self.split_axis is None:
            return region
        axis, inner = self.split_axis, our_shape[self.split_axis + 1]
        region = region.reshape(region.shape[:axis] + (-1, inner) + region.shape[axis + 1:])
        keep = [slice(None)] * region.ndim
        keep[axis + 1] = slice(*bounds[axis + 1])
        return region[tuple(keep)]

    def place(self, hf_array: np.ndarray, our_shape: tuple[int, ...], bounds: Bounds, piece: np.ndarray,
              name: str) -> None:
        """Write ``piece`` (``ours`` within ``bounds``) into ``hf_array``, casting to its dtype."""
        if self.split_axis is not None:
            axis = self.split_axis
            if tuple(bounds[axis + 1]) != (0, our_shape[axis + 1]):
                raise CheckpointError(f"export of {name}: head_dim is split across devices, which export does not "
                                      "support; keep head_dim unsharded in sharding.LOGICAL_AXIS_RULES")
            piece = piece.reshape(piece.shape[:axis] + (-1,) + piece.shape[axis + 2:])
        matrix_bounds = self._matrix_bounds(bounds, our_shape)
        if self.transposed:
            matrix_bounds, piece = matrix_bounds[::-1], piece.T
        hf_array[tuple(slice(start, stop) for start, stop in matrix_bounds)] = piece

    def to_ours(self, hf_array: np.ndarray, our_shape: tuple[int, ...]) -> np.ndarray:
        """The whole of ours from the whole HF tensor."""
        return self.read(lambda *index: hf_array[index], our_shape, tuple(slice(None) for _ in our_shape))

    def to_hf(self, ours: np.ndarray, dtype=None) -> np.ndarray:
        """The whole HF tensor (in ``dtype``, default ours) from the whole of ours."""
        ours = np.asarray(ours)
        hf_array = np.empty(self.hf_shape(ours.shape), ours.dtype if dtype is None else dtype)
        self.place(hf_array, ours.shape, [(0, dim) for dim in ours.shape], ours, "")
        return hf_array

    def _matrix_bounds(self, bounds: Bounds, our_shape: tuple[int, ...]) -> Bounds:
        """The matrix rows/columns behind ``bounds`` of ours (whole heads: the inner axis is read whole)."""
        if self.split_axis is None:
            return list(bounds)
        axis, inner = self.split_axis, our_shape[self.split_axis + 1]
        start, stop = bounds[axis]
        return list(bounds[:axis]) + [(start * inner, stop * inner)] + list(bounds[axis + 2:])
