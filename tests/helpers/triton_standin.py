"""A STAND-IN for Triton Inference Server (not Triton): Triton's gRPC protocol (ModelConfig, ModelInfer)
served from 127.0.0.1 by ONNX Runtime, for contract tests and measurements of the triton client backend."""

from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc


class StandInTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """NOT Triton: serves one ONNX model through Triton's gRPC protocol, for the client's contract test."""

    def __init__(self, onnx_path, config):
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.config = config
        self.batch_sizes = []

    def ModelConfig(self, request, context):  # noqa: N802 - gRPC method names
        if request.name != self.config.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{request.name}'")
        return service_pb2.ModelConfigResponse(config=self.config)

    def ModelInfer(self, request, context):  # noqa: N802
        tensor = request.inputs[0]
        batch = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(list(tensor.shape))
        self.batch_sizes.append(batch.shape[0])
        (logits,) = self.session.run(None, {tensor.name: batch})
        out = service_pb2.ModelInferResponse.InferOutputTensor(name=request.outputs[0].name, datatype="FP32",
                                                                shape=list(logits.shape))
        return service_pb2.ModelInferResponse(model_name=request.model_name, outputs=[out],
                                              raw_output_contents=[logits.astype(np.float32).tobytes()])


def start_standin(onnx_path, model_folder):
    """Serve ``onnx_path`` under the config of ``model_folder`` on 127.0.0.1; returns (servicer, server, port)."""
    config = text_format.Parse((Path(model_folder) / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    servicer = StandInTriton(onnx_path, config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return servicer, server, port
