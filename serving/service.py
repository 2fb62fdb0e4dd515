"""Predict, Classify, Regress, MultiInference, metadata and status, independent of the transport.

REST and gRPC both decode their request into numpy arrays or serialized
examples, call this module, and encode its answer; so both give the same
numbers and the same errors.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving import inference, model_config
from serving.batching import BatchingOptions, BatchScheduler
from serving.errors import invalid_argument
from serving.models import ModelRegistry
from serving.request_log import RequestLoggers
from serving.servable import Servable, Signature

SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving knows


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """What a request addresses: a model, and at most one of version/label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """A call's answer, with the version and signature that produced it."""

    servable: Servable
    signature: Signature
    outputs: dict

    def model_spec(self, name: str) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=name, signature_name=self.signature.name)
        spec.version.value = self.servable.version
        return spec


class ModelService:
    """The model server's API over the served models.

    Args:
      models: The models and their versions.
      batching: Batching parameters; None calls each request on its own.
      request_log: Where answered requests are offered for logging, or None.
    """

    def __init__(self, models: ModelRegistry, batching: BatchingOptions | None = None,
                 request_log: RequestLoggers | None = None):
        self.models = models
        self._scheduler = BatchScheduler(batching) if batching else None
        self._request_log = request_log

    def log(self, model_name: str, kind: str, build: Callable[[], list[tuple[Message, Message]]]) -> None:
        """Offers an answered request to its model's request logger: sampled there; `build` makes its
        (request, response) protos later, in the logger's writer thread (serving/request_log.py)."""
        if self._request_log is not None:
            self._request_log.log(model_name, kind, build)

    def resolve(self, ref: ModelRef) -> Servable:
        """The servable `ref` addresses.

        The caller keeps the returned object for the whole request: a version
        swap in the meantime does not affect it.
        """
        if not ref.name:
            raise invalid_argument("ModelSpec has no name specified.")  # ServerCore's answer
        return self.models.servable(ref.name, ref.version, ref.label)

    def predict(self, servable: Servable, signature_name: str | None, inputs: dict[str, np.ndarray],
                output_filter: list[str] | None = None) -> Result:
        """Runs a signature; `outputs` maps output alias -> array."""
        signature = servable.signature(signature_name)
        wanted = _check_filter(signature, output_filter)
        outputs = self.run(servable, signature, inputs)
        return Result(servable, signature, {key: outputs[key] for key in wanted})

    def classify(self, servable: Servable, signature_name: str | None, examples: list[bytes]) -> Result:
        """Runs a classify signature; `outputs["rows"]` lists, per example, (label, score) pairs."""
        signature = inference.classify_signature(servable, signature_name)
        outputs = self._run_examples(servable, signature, examples)
        return Result(servable, signature, {"rows": inference.classification_rows(outputs, len(examples))})

    def regress(self, servable: Servable, signature_name: str | None, examples: list[bytes]) -> Result:
        """Runs a regress signature; `outputs["values"]` holds one float per example."""
        signature = inference.regress_signature(servable, signature_name)
        outputs = self._run_examples(servable, signature, examples)
        return Result(servable, signature, {"values": inference.regression_values(outputs, len(examples))})

    def multi_inference(self, servable: Servable, tasks: list[inference.Task], examples: list[bytes]
                        ) -> list[Result]:
        """Classify and Regress tasks on the same examples, one Result per task, in order.

        Every task is checked before any runs, so a bad task fails the whole
        request, as TF Serving's MultiInference.
        """
        signatures = inference.multi_inference_signatures(servable, tasks)
        results = []
        for task, signature in zip(tasks, signatures, strict=True):
            outputs = self._run_examples(servable, signature, examples)
            if task.method_name == inference.REGRESS_METHOD:
                results.append(Result(servable, signature,
                                      {"values": inference.regression_values(outputs, len(examples))}))
            else:
                results.append(Result(servable, signature,
                                      {"rows": inference.classification_rows(outputs, len(examples))}))
        return results

    def _run_examples(self, servable: Servable, signature: Signature, examples: list[bytes]) -> dict:
        return self.run(servable, signature, example_inputs(examples))

    def metadata(self, ref: ModelRef, fields: list[str] | None = None
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the version's SignatureDefMap, as saved."""
        fields = [SIGNATURE_DEF_FIELD] if fields is None else fields
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        unknown = sorted(set(fields) - {SIGNATURE_DEF_FIELD})
        if unknown:
            raise invalid_argument(f"Metadata field {unknown[0]} is not supported")
        servable = self.resolve(ref)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = ref.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def status(self, ref: ModelRef) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: all versions seen, or the one `ref` names."""
        return self.models.statuses(ref.name, ref.version, ref.label)

    def reload_config(self, config: model_config.ModelServerConfig) -> None:
        """HandleReloadConfigRequest: realizes `config` (ModelRegistry.reload)."""
        if config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                                   "Only ModelConfigList is currently supported")
        self.models.reload(config)

    @property
    def batching(self) -> bool:
        """Calls go through the batch scheduler."""
        return self._scheduler is not None

    def run(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray]) -> dict:
        """One signature call, all outputs, batched with concurrent calls when batching is on (blocks)."""
        if self._scheduler is not None:
            return self._scheduler.run(servable, signature, inputs)
        return servable.run(signature, inputs)

    def submit(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray]
               ) -> concurrent.futures.Future | None:
        """With batching, queues the call and returns a future of its outputs without waiting (so an
        event loop can wait for a batch without holding a thread); None when the caller must `run` it:
        no batching, or a call too large to batch."""
        if self._scheduler is None:
            return None
        return self._scheduler.submit(servable, signature, inputs)


def example_inputs(examples: list[bytes]) -> dict[str, np.ndarray]:
    """A Classify/Regress signature's inputs: the serialized examples under `inputs`."""
    if not examples:
        raise invalid_argument("Input is empty.")  # InputToSerializedExampleTensor's answer
    serialized = np.empty(len(examples), dtype=object)
    serialized[:] = examples
    return {inference.INPUTS: serialized}


def _check_filter(signature: Signature, output_filter: list[str] | None) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    unknown = [name for name in output_filter if name not in signature.outputs]
    if unknown:
        raise invalid_argument(f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be "
                               f"in the set {{{','.join(signature.outputs)}}}.")
    if len(set(output_filter)) != len(output_filter):
        raise invalid_argument("duplicate output tensor alias in output_filter")
    return list(output_filter)

