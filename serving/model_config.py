"""`--model_config_file`: TF Serving's text-format `ModelServerConfig`, checked as ServerCore checks it.

Rules from `tensorflow_serving/model_servers/server_core.cc` (`ReloadConfig`,
`ValidateModelConfigList`, `GetPlatform`) and the file-system source's version
policies (`file_system_storage_path_source.cc`: latest N, all, specific).
Every refusal is a `ServingError` with TF Serving's code, so a gRPC
`HandleReloadConfigRequest` answers it as TF Serving does.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServingError, invalid_argument

ModelServerConfig = model_server_config_pb2.ModelServerConfig
TENSORFLOW_PLATFORM = "tensorflow"  # the only platform tensorflow_model_server registers by default

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve (`ServableVersionPolicy`).

    Attributes:
      kind: "latest", "all" or "specific".
      num_versions: For "latest": how many of the highest versions.
      versions: For "specific": the version numbers.
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: set[int]) -> set[int]:
        """The versions to serve among `on_disk` (the aspired versions)."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            missing = sorted(set(self.versions) - on_disk)
            if missing:  # TF Serving only warns: they may appear later
                log.warning("specific versions %s not found on disk", missing)
            return set(self.versions) & on_disk
        return set(sorted(on_disk, reverse=True)[:max(self.num_versions, 1)])  # latest: 0 means 1

    @classmethod
    def from_proto(cls, proto) -> VersionPolicy:
        choice = proto.WhichOneof("policy_choice")
        if choice == "all":
            return cls("all")
        if choice == "specific":
            return cls("specific", versions=tuple(proto.specific.versions))
        if choice == "latest":
            return cls("latest", num_versions=proto.latest.num_versions)
        return cls()  # unset: latest 1, the default


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One model of the config list, checked.

    Attributes:
      name: Name clients address the model by.
      base_path: Absolute directory of `<version>/` SavedModels.
      policy: Which versions to serve.
      version_labels: Label -> version.
    """

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    version_labels: dict[str, int] = dataclasses.field(default_factory=dict)


def parse(text: str) -> ModelServerConfig:
    """Parses a text-format ModelServerConfig.

    Raises:
      ServingError: INVALID_ARGUMENT with the parser's message, worded as TF
        Serving's ("Error parsing text-format tensorflow.serving.ModelServerConfig").
    """
    try:
        return text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as error:
        raise invalid_argument(f"Error parsing text-format tensorflow.serving.ModelServerConfig: {error}") from None


def read(path: str) -> ModelServerConfig:
    """Reads and parses `--model_config_file`.

    Raises:
      ServingError: NOT_FOUND for a missing file, INVALID_ARGUMENT for bad text.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"{path}: {error.strerror}") from None
    return parse(text)


def single_model(name: str, base_path: str, version_labels: dict[str, int] | None = None) -> ModelServerConfig:
    """The config `--model_name` / `--model_base_path` stand for (Server::BuildSingleModelConfig)."""
    config = ModelServerConfig()
    entry = config.model_config_list.config.add(name=name, base_path=base_path, model_platform=TENSORFLOW_PLATFORM)
    for label, version in (version_labels or {}).items():
        entry.version_labels[label] = version
    return config


def check_transition(old: ModelServerConfig, new: ModelServerConfig) -> None:
    """Refuses what ServerCore::ReloadConfig refuses before touching any model."""
    kind = new.WhichOneof("config")
    if kind == "custom_model_config":
        raise invalid_argument("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                               "Only ModelConfigList is currently supported")
    both_lists = old.WhichOneof("config") == kind == "model_config_list"
    if old.WhichOneof("config") is not None and old != new and not both_lists:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           "Cannot transition to requested config. It is only legal to transition "
                           "from one ModelConfigList to another.")


def models(config: ModelServerConfig) -> list[ModelConfig]:
    """The config's models, checked (ValidateModelConfigList and GetPlatform).

    Raises:
      ServingError: INVALID_ARGUMENT for a repeated name, a relative base
        path or a missing platform; FAILED_PRECONDITION for a platform other
        than "tensorflow".
    """
    checked, seen = [], set()
    for entry in config.model_config_list.config:
        if entry.name in seen:
            raise invalid_argument(f"Illegal to list model {entry.name} multiple times in config list")
        seen.add(entry.name)
        if not (os.path.isabs(entry.base_path) or "://" in entry.base_path):  # a path or a URI (gs://, s3://)
            raise invalid_argument(f"Expected model {entry.name} to have an absolute path or URI; "
                                   f"got base_path()={entry.base_path}")
        _check_platform(entry)
        checked.append(ModelConfig(entry.name, entry.base_path, VersionPolicy.from_proto(entry.model_version_policy),
                                   dict(entry.version_labels)))
    return checked


def _check_platform(entry) -> None:
    platform = entry.model_platform
    if entry.model_type:  # the deprecated enum: TENSORFLOW = 1
        if platform:
            raise invalid_argument("Illegal setting both ModelServerConfig::model_type (deprecated) and "
                                   f"ModelServerConfig::model_platform, model name is {entry.name}")
        if entry.model_type != model_server_config_pb2.TENSORFLOW:
            raise invalid_argument(f"ModelServerConfig::model_type choice {entry.model_type} not supported.")
        platform = TENSORFLOW_PLATFORM
    if not platform:
        raise invalid_argument("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                               f"ModelServerConfig::model_platform, model name is {entry.name}")
    if platform != TENSORFLOW_PLATFORM:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"PlatformConfigMap has no entry for platform {platform}")
