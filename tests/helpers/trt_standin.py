"""A stand-in for the ``tensorrt`` Python module, for API-CONTRACT TESTS ONLY.

It is not TensorRT and computes nothing TensorRT would: it enforces the parts of
TensorRT's documented contract (TensorRT 10.x/11.x Python API and NvInferRuntime.h)
that reskd-infer relies on, so that misuse fails here the way it would on a GPU:

* ``IExecutionContext.set_input_shape`` returns False for an unknown tensor, a wrong
  rank or fixed dimension, or a batch outside the optimization profile's MIN..MAX;
* ``get_tensor_shape`` of an output has -1 where the input shape is not yet set;
* ``set_tensor_address`` returns False for an unknown tensor name;
* ``execute_async_v3`` returns False unless every input shape and every I/O tensor
  address was set;
* ``IBuilderConfig.set_timing_cache(cache, ignore_mismatch=False)`` returns False for
  a cache written on another device; ``get_timing_cache`` is None when no cache is set;
* ``Builder.build_serialized_network`` returns None when a dynamic input has no
  optimization profile;
* ``Runtime.deserialize_cuda_engine`` returns None for bytes that are not its plans.

The "engine" multiplies the flattened input by a fixed matrix, reading and writing
the buffers at the addresses it was given (host memory here), so tests can check
every sample's output. Passing these tests says nothing about a real GPU run.
"""

from __future__ import annotations

import ctypes
import enum
import json

import numpy as np

__version__ = "11.1.0.106"
DEVICE_TAG = "standin-gpu/cc8.9"  # what a timing cache header records about the device it was made on
PLAN_MAGIC = b"STANDIN-PLAN\n"


class _Knobs:
    """Test switches for failures TensorRT can produce."""

    serialize_cache_raises = False


knobs = _Knobs()


class Logger:
    WARNING, ERROR = 2, 1

    def __init__(self, level: int = 2):
        self.level = level


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class BuilderFlag(enum.IntEnum):
    TF32 = 6


class TensorIOMode(enum.IntEnum):
    NONE, INPUT, OUTPUT = 0, 1, 2


class DataType(enum.IntEnum):
    FLOAT, HALF = 0, 1


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class ITensor:
    name: str = ""  # class-level, as TensorRT's properties are: the API-name check resolves Class.attribute
    shape: tuple[int, ...] = ()

    def __init__(self, name: str, shape: tuple[int, ...]):
        self.name, self.shape = name, shape


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags = flags
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]


class OnnxParser:
    """Reads the graph's inputs and outputs (names, shapes; symbolic dims become -1) from real ONNX bytes."""

    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse(self, data: bytes) -> bool:
        import onnx

        try:
            graph = onnx.load_from_string(data).graph
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"not an ONNX model: {exc}")
            return False

        def shape(value) -> tuple[int, ...]:
            return tuple(d.dim_value if d.dim_value else -1 for d in value.type.tensor_type.shape.dim)

        self.network.inputs = [ITensor(v.name, shape(v)) for v in graph.input]
        self.network.outputs = [ITensor(v.name, shape(v)) for v in graph.output]
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 - TensorRT's names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, device: str, entries: int = 0):
        self.device, self.entries = device, entries

    def serialize(self) -> bytes:
        if knobs.serialize_cache_raises:
            raise RuntimeError("stand-in: serializing the timing cache failed")
        return json.dumps({"device": self.device, "entries": self.entries}).encode()


class IBuilderConfig:
    progress_monitor: IProgressMonitor | None = None

    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # TensorRT enables TF32 by default
        self.profiles: list[IOptimizationProfile] = []
        self.pool_limits: dict[int, int] = {}
        self.cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pool_limits[int(pool)] = int(size)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(flag)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        if not serialized_timing_cache:
            return ITimingCache(DEVICE_TAG)
        data = json.loads(bytes(serialized_timing_cache))
        return ITimingCache(data["device"], data["entries"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.device != DEVICE_TAG and not ignore_mismatch:
            return False  # "A failure will be reported if the CUDA device property in the provided cache is different"
        self.cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.cache


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        profile = config.profiles[0].shapes if config.profiles else {}
        for tensor in network.inputs:
            if -1 in tensor.shape and tensor.name not in profile:
                return None  # a dynamic input needs an optimization profile
        if config.cache is not None:
            config.cache.entries += 1
        plan = {"inputs": {t.name: profile.get(t.name, (t.shape,) * 3) for t in network.inputs},
                "outputs": {t.name: t.shape for t in network.outputs},
                "tf32": BuilderFlag.TF32 in config.flags,
                # Explicit quantization (Q/DQ graphs) is meant for strongly typed networks: the types come
                # from the graph (TensorRT 10/11 "Explicit Quantization"), so the plan records the mode.
                "strongly_typed": bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))}
        return PLAN_MAGIC + json.dumps(plan).encode()


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
        data = bytes(data)
        if not data.startswith(PLAN_MAGIC):
            return None  # TensorRT logs "version tag does not match" and returns null
        return ICudaEngine(json.loads(data[len(PLAN_MAGIC):]))


def weights(in_features: int, classes: int) -> np.ndarray:
    """The stand-in engine's fixed (in_features, classes) matrix."""
    return np.random.default_rng(0).standard_normal((in_features, classes)).astype(np.float32)


class ICudaEngine:
    def __init__(self, plan: dict):
        self.plan = plan
        self.profiles = {k: tuple(tuple(s) for s in v) for k, v in plan["inputs"].items()}
        self.outputs = {k: tuple(v) for k, v in plan["outputs"].items()}
        self.names = list(self.profiles) + list(self.outputs)

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.profiles else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> tuple[tuple[int, ...], ...]:
        return self.profiles[name]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        if name not in self.engine.profiles:
            return False
        low, _, high = self.engine.profiles[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=True)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.profiles:
            return self.shapes.get(name, self.engine.profiles[name][0])
        batch = next(iter(self.shapes.values()))[0] if self.shapes else -1
        return (batch, *self.engine.outputs[name][1:])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.names:
            return False
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if set(self.shapes) != set(self.engine.profiles) or set(self.addresses) != set(self.engine.names):
            return False  # every input shape and every I/O tensor address must be set first
        (in_name, in_shape), = self.shapes.items()
        out_name = next(iter(self.engine.outputs))
        out_shape = self.get_tensor_shape(out_name)
        x = _view(self.addresses[in_name], in_shape).reshape(in_shape[0], -1)
        _view(self.addresses[out_name], out_shape)[...] = x @ weights(x.shape[1], out_shape[1])
        self.executions += 1
        return True


def _view(address: int, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 buffer at ``address`` as an array (host memory in these tests)."""
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)).reshape(shape)
