"""Batched arrays where the worlds are: numpy on the host, torch on a device, behind one set of calls.

The fused loop on MuJoCo Warp keeps the worlds' state, the observation, the reward, the resets and
the command execution on the device (a torch view of Warp's arrays, no copies). Tasks, terms and the
command contract are written once against the array API (``array_api_compat``), so the same
function serves numpy worlds, torch worlds on a GPU and a deployed robot. Constants (a robot's home
pose, a kinematic chain) live in numpy and are moved to the array's device once (``like``).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np
from array_api_compat import device, is_numpy_array, is_torch_array

__all__ = [
    "as_float",
    "device",
    "draws",
    "integers",
    "is_host",
    "like",
    "namespace",
    "normal",
    "on_device",
    "restore_stream",
    "stream_state",
    "to_host",
    "uniform",
    "zeros",
]

# (id of the numpy constant, device, dtype) -> (the constant, kept alive so its id stays its own; the copy)
_CONSTANTS: dict[tuple[int, str, str], tuple[np.ndarray, Any]] = {}


def namespace(*arrays: Any) -> Any:
    """The array API namespace of ``arrays``: array_api_compat's torch namespace for device tensors,
    its numpy namespace for numpy arrays, plain numbers and lists. (numpy itself, which skips the
    wrapper's ~10 us per call at one robot, made a deployed node and simulator die on Ctrl-C under
    ros2 launch instead of finishing cleanly; not understood yet, so the wrapper stays.)"""
    tensors = [array for array in arrays if is_torch_array(array)]
    return array_api_compat.array_namespace(*tensors) if tensors else array_api_compat.numpy


def is_host(array: Any) -> bool:
    """Whether ``array`` is a numpy array (host worlds), not a device tensor."""
    return is_numpy_array(array)


def like(constant: np.ndarray | float, reference: Any, index: bool = False) -> Any:
    """``constant`` in ``reference``'s namespace, on its device: the numpy constant itself for numpy,
    else a device copy made once per constant and device, in the reference's floating dtype (or
    int64 for an ``index``)."""
    if is_numpy_array(reference) or not is_torch_array(reference):
        return constant
    import torch

    if index:
        dtype = torch.int64
    else:
        dtype = reference.dtype if reference.dtype.is_floating_point else torch.float32
    source = np.asarray(constant)
    key = (id(constant), str(reference.device), str(dtype))
    cached = _CONSTANTS.get(key)
    if cached is None or cached[0] is not constant:
        cached = _CONSTANTS[key] = (constant, torch.tensor(source, dtype=dtype, device=reference.device))
    return cached[1]


def zeros(shape: tuple[int, ...], reference: Any, dtype: str = "float") -> Any:
    """Zeros of ``shape`` beside ``reference``: ``dtype`` "float" (the reference's if it is floating,
    else float64 on the host and float32 on a device), "float32", "bool" or "int"."""
    xp = namespace(reference)
    types = {"float32": xp.float32, "bool": xp.bool, "int": xp.int64}
    if dtype != "float":
        chosen = types[dtype]
    elif xp.isdtype(reference.dtype, "real floating"):
        chosen = reference.dtype
    else:
        chosen = xp.float64 if is_numpy_array(reference) else xp.float32
    return xp.zeros(shape, dtype=chosen, device=device(reference))


def as_float(array: Any) -> Any:
    """``array`` in floating point: as it is if it is, else float64 on the host, float32 on a device."""
    return namespace(array).astype(array, zeros((0,), array).dtype)


def on_device(array: Any, reference: Any) -> Any:
    """``array`` where ``reference`` is: itself beside numpy, else a tensor on the reference's device
    (floating values in its float dtype; no copy when it is there already)."""
    if is_numpy_array(reference):
        return array
    import torch

    tensor = torch.as_tensor(array, device=reference.device)
    return tensor.to(reference.dtype) if tensor.is_floating_point() else tensor


def to_host(array: Any) -> np.ndarray:
    """A numpy array of ``array`` (itself where it already is one): for messages, files and logs."""
    if is_numpy_array(array):
        return array
    return array.detach().cpu().numpy()


def draws(seed: int, reference: Any) -> Any:
    """A random stream on ``reference``'s side: numpy's Generator, or a torch Generator on its device."""
    if is_numpy_array(reference):
        return np.random.default_rng(seed)
    import torch

    return torch.Generator(reference.device).manual_seed(seed)


def uniform(rng: Any, low: Any, high: Any, shape: tuple[int, ...]) -> Any:
    """Uniform draws in [low, high) of ``shape`` from ``rng`` (a numpy or torch Generator); ``low`` and
    ``high`` are scalars or numpy constants that broadcast."""
    if isinstance(rng, np.random.Generator):
        return rng.uniform(low, high, shape)
    import torch

    unit = torch.rand(shape, generator=rng, device=rng.device)
    low, high = (like(bound, unit) if isinstance(bound, np.ndarray) else bound for bound in (low, high))
    return low + (high - low) * unit


def stream_state(rng: Any) -> Any:
    """A random stream's state for a checkpoint: numpy's bit generator state (a dict), or a torch
    Generator's state (a uint8 tensor)."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return rng.get_state()


def restore_stream(rng: Any, state: Any) -> None:
    """Continue ``rng`` from ``stream_state``. A state of the other side (numpy's for a device stream
    or the reverse) is skipped: the two draw other numbers from the same seed anyway."""
    if isinstance(rng, np.random.Generator):
        if isinstance(state, dict):
            rng.bit_generator.state = state
    elif is_torch_array(state):
        rng.set_state(state.cpu())


def integers(rng: Any, low: int, high: int, shape: tuple[int, ...]) -> Any:
    """Integers in [low, high) of ``shape`` from ``rng`` (a numpy or torch Generator)."""
    if isinstance(rng, np.random.Generator):
        return rng.integers(low, high, shape)
    import torch

    return torch.randint(low, high, shape, generator=rng, device=rng.device)


def normal(rng: Any, mean: float, sigma: float, shape: tuple[int, ...]) -> Any:
    """Normal draws of ``shape`` from ``rng`` (a numpy or torch Generator)."""
    if isinstance(rng, np.random.Generator):
        return rng.normal(mean, sigma, shape)
    import torch

    return mean + sigma * torch.randn(shape, generator=rng, device=rng.device)
