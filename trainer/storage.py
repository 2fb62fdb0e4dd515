"""Where files live: local disk, gs:// or s3://, behind one small set of functions.

The rule (docs/design.md §10, object storage): a path's scheme decides.

* Local paths use `os` and `shutil`; directories are published by rename
  (`trainer.atomic`), atomic on one file system.
* gs:// and s3:// paths use Beam's FileSystems (`apache-beam[gcp,aws]`), here
  and in the Beam steps. TensorFlow writes its own files (SavedModels,
  TFRecords through tf.data, checkpoints, summaries) with tf.io.gfile where
  it can open the path: local and gs://. TensorFlow 2.21 cannot open s3://,
  so its files for s3:// are written to local disk and copied
  (`tensorflow_can_open`, `copy_tree`).

Object storage has no rename, so a directory is published as objects under
its final name, and a completion marker written after every other object
(`publish_tree`). Readers trust a version on object storage only when its
marker is present (`list_versions`): objects are written whole, and GCS and
S3 list and read what was written strongly consistently, so a reader that
sees the marker sees every file. A publish that fails removes what it wrote;
one killed half-way leaves an unmarked directory that readers ignore and
that the next publish skips (its number is taken).

This module imports neither TensorFlow nor Beam until a remote path is used.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import shutil
import uuid
from collections.abc import Callable, Iterator

from trainer.layout import SAVED_MODEL_FILE, VERSION_MARKER  # saved_model.pb is copied last: never half a version

LOCAL, GCS, S3 = "local", "gs", "s3"
REMOTE_SCHEMES = (GCS, S3)


class StorageError(OSError):
    """A path that cannot be used (unknown scheme, missing bucket...), as one line."""


class VersionTaken(StorageError):
    """Another publisher took the version number `publish_tree` was given: try the next one."""


def scheme(path: str) -> str:
    """`local`, `gs` or `s3`; any other URL scheme is a StorageError."""
    if "://" not in path:
        return LOCAL
    name = path.split("://", 1)[0].lower()
    if name not in REMOTE_SCHEMES:
        raise StorageError(f"{path}: unsupported storage scheme {name}:// (use a local path, gs:// or s3://)")
    if not path.split("://", 1)[1].split("/", 1)[0]:
        raise StorageError(f"{path}: no bucket in the path")
    return name


def is_remote(path: str) -> bool:
    return scheme(path) != LOCAL


def tensorflow_can_open(path: str) -> bool:
    """Whether TensorFlow's own file system reads and writes `path` (local and gs://, not s3:// in 2.21)."""
    return scheme(path) in (LOCAL, GCS)


def join(base: str, *parts: str) -> str:
    """`os.path.join` locally; `/`-joined for URLs."""
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


_configured = False


def configure(beam_pipeline_args: list[str] | tuple[str, ...] = ()) -> None:
    """Gives Beam's FileSystems their options (`--s3_endpoint_url`, credentials...); S3 needs them outside pipelines."""
    global _configured
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    if beam_pipeline_args or not _configured:
        FileSystems.set_options(PipelineOptions(list(beam_pipeline_args)))
    _configured = True


def _filesystems():
    if not _configured:
        configure()
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        # A GCS emulator has no credentials: skip Beam's search for them (~21 s of retries before it falls
        # back to anonymous access), as google-cloud-storage itself does for an emulator.
        from apache_beam.internal.gcp import auth

        with auth._Credentials._credentials_lock:
            auth._Credentials._credentials, auth._Credentials._credentials_init = None, True
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


_found_buckets: set[str] = set()  # checked once per process: every remote write checks its bucket


def check_bucket(path: str) -> None:
    """Remote only: a missing bucket is a StorageError naming it (Beam reports a missing file, or nothing)."""
    bucket = "/".join(path.split("/")[:3])
    if bucket in _found_buckets:
        return
    options = _filesystems()._pipeline_options
    try:
        if scheme(path) == GCS:
            from apache_beam.io.gcp import gcsio

            found = gcsio.GcsIO(pipeline_options=options).get_bucket(bucket[5:]) is not None
        else:
            from apache_beam.io.aws import s3io

            found = s3io.S3IO(options=options).client.client.head_bucket(Bucket=bucket[5:]) is not None
    except Exception:  # 404/403 from the store, or no connection: one line below either way
        found = False
    if not found:
        raise StorageError(f"{path}: the bucket {bucket} does not exist or cannot be reached")
    _found_buckets.add(bucket)


def exists(path: str) -> bool:
    """Whether a file, or a directory (locally) / any object under the prefix (remotely), exists."""
    if not is_remote(path):
        return os.path.exists(path)
    return _filesystems().exists(path) or bool(list_files(path))


def list_files(directory: str) -> list[str]:
    """Every file under `directory`, recursively, as paths relative to it (sorted)."""
    if not is_remote(directory):
        found = []
        for root, _, names in os.walk(directory):
            found += [os.path.relpath(os.path.join(root, n), directory) for n in names]
        return sorted(found)
    prefix = directory.rstrip("/") + "/"
    result = _filesystems().match([prefix + "**"])[0]
    return sorted(m.path[len(prefix):] for m in result.metadata_list if len(m.path) > len(prefix))


def glob(pattern: str) -> list[str]:
    """The files matching a path or glob (`*`, `?`, `[...]`; `**` crosses directories remotely), sorted."""
    if not is_remote(pattern):
        import glob as local_glob

        return sorted(p for p in local_glob.glob(pattern) if os.path.isfile(p))
    return sorted(m.path for m in _remote_matches(pattern))


def _remote_matches(pattern: str) -> list:
    """Beam's metadata of the objects matching a remote pattern (folder markers left out)."""
    check_bucket(pattern)
    return [m for m in _filesystems().match([pattern])[0].metadata_list if not m.path.endswith("/")]


def file_facts(pattern: str) -> list[tuple[str, int, float]]:
    """(path, size in bytes, modification time) of each file matching `pattern`, sorted by path.

    What tells a changed input apart without reading its bytes (`tuning.executions.describe_data`).
    Local: the absolute path and `st_mtime_ns`; remote: the store's size and last-update time.
    """
    if not is_remote(pattern):
        return [(os.path.abspath(p), (status := os.stat(p)).st_size, status.st_mtime_ns) for p in glob(pattern)]
    return sorted((m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in _remote_matches(pattern))


def size(path: str) -> int:
    """A file's size in bytes."""
    if not is_remote(path):
        return os.path.getsize(path)
    return _filesystems().match([path])[0].metadata_list[0].size_in_bytes


def listdir(directory: str) -> list[str]:
    """The names directly under `directory` (files and subdirectories); [] if there is none."""
    if not is_remote(directory):
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return sorted({name.split("/", 1)[0] for name in list_files(directory)})


def makedirs(path: str) -> None:
    """Creates a local directory; object storage has none to create."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str = "rb") -> io.IOBase:
    """Opens `path` for reading or writing ("r", "rb", "w", "wb"); text is UTF-8.

    A remote file written is visible only once closed, whole (one object).
    """
    if not is_remote(path):
        if "w" in mode:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 (the caller closes)
    from apache_beam.io.filesystem import CompressionTypes

    filesystems = _filesystems()
    if "w" in mode:
        check_bucket(path)
        handle = _S3Writer(path) if scheme(path) == S3 else filesystems.create(
            path, compression_type=CompressionTypes.UNCOMPRESSED)
    else:
        handle = filesystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return handle if "b" in mode else io.TextIOWrapper(handle, encoding="utf-8")


class _S3Writer(io.RawIOBase):
    """Beam's S3 writer, opened at the first byte: Beam cannot write an empty object (a multipart upload
    without parts is malformed), so an empty file is one plain PUT."""

    def __init__(self, path: str):
        super().__init__()
        self._path, self._writer = path, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._writer is None and len(data):
            from apache_beam.io.filesystem import CompressionTypes

            self._writer = _filesystems().create(self._path, compression_type=CompressionTypes.UNCOMPRESSED)
        return self._writer.write(data) if len(data) else 0

    def close(self) -> None:
        if not self.closed:
            if self._writer is not None:
                self._writer.close()
            else:
                from apache_beam.io.aws import s3io

                bucket, key = self._path[5:].split("/", 1)
                s3io.S3IO(options=_filesystems()._pipeline_options).client.client.put_object(
                    Bucket=bucket, Key=key, Body=b"")
        super().close()


def read_text(path: str) -> str:
    with open_file(path, "r") as handle:
        return handle.read()


def write_text(path: str, text: str) -> None:
    with open_file(path, "wb") as handle:
        handle.write(text.encode("utf-8"))


def copy_file(source: str, target: str) -> None:
    """Copies one file between any two places (local, gs://, s3://)."""
    if not is_remote(source) and not is_remote(target):
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        shutil.copyfile(source, target)
        return
    if scheme(source) == scheme(target):  # server-side copy within one store
        check_bucket(target)
        _filesystems().copy([source], [target])
        return
    with open_file(source, "rb") as reader, open_file(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, 8 << 20)


TRANSFERS = 8  # objects copied at once


def in_parallel(function: Callable[[str], None], names: list[str]) -> None:
    """`function` on every name, a few at a time: each object is one request, its latency the cost."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=TRANSFERS) as pool:
        for _ in pool.map(function, names):  # the first failure is raised here
            pass


def copy_files(source: str, target: str, names: list[str]) -> None:
    """Copies the files `names` (`/`-separated paths relative to `source`) to the same paths under `target`,
    a few at a time (`in_parallel`)."""
    in_parallel(lambda name: copy_file(join(source, name), join(target, name)), names)


def copy_tree(source: str, target: str, last: tuple[str, ...] = ()) -> list[str]:
    """Copies every file under `source` to `target`; the relative paths in `last` are copied last.

    Returns:
      The relative paths copied, in order.
    """
    names = list_files(source)
    if not names:
        raise StorageError(f"{source}: no file to copy")
    order = [n for n in names if n.replace(os.sep, "/") not in last]
    order += [n for n in names if n.replace(os.sep, "/") in last]
    for name in order:
        copy_file(join(source, name.replace(os.sep, "/")), join(target, name.replace(os.sep, "/")))
    return order


def remove_tree(path: str) -> None:
    """Removes a directory (or every object under a prefix); nothing there is not an error."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    files = [join(path, name) for name in list_files(path)]
    if files:
        _filesystems().delete(files)


def remove_files(paths: list[str]) -> None:
    """Removes the given files (local or remote); ones already gone are not an error locally."""
    local = [p for p in paths if not is_remote(p)]
    for path in local:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    remote = [p for p in paths if is_remote(p)]
    if remote:
        _filesystems().delete(remote)


def version_dirs(base: str) -> dict[str, bool]:
    """Remote only: the names directly under `base` -> whether their version marker is present (one listing)."""
    names = list_files(base)
    marked = {name[: -len(VERSION_MARKER) - 1] for name in names if name.endswith("/" + VERSION_MARKER)}
    return {name: name in marked for name in {n.split("/", 1)[0] for n in names}}


def publish_tree(source: str, base: str, version: int, extra_files: dict[str, str] | None = None) -> str:
    """Publishes `source` as `base/<version>` on object storage, marker last; returns its path.

    `saved_model.pb` is copied after every other file (TF Serving, which knows
    no marker, loads a version once it appears), `extra_files` (relative
    path -> text) next, the marker last. On failure everything written under
    the new version is removed, so no half-written version is left.
    """
    target = join(base, str(version))
    if list_files(target):
        raise VersionTaken(f"{target} already exists: another publisher took version {version}")
    token = uuid.uuid4().hex
    try:
        copy_tree(source, target, last=(SAVED_MODEL_FILE,))
        for relative, text in (extra_files or {}).items():
            write_text(join(target, relative), text)
        write_text(join(target, VERSION_MARKER), token)
        if read_text(join(target, VERSION_MARKER)) != token:  # another publisher wrote the same number
            raise VersionTaken(f"{target}: another publisher wrote version {version} at the same time")
    except BaseException:
        remove_tree(target)
        raise
    return target


@contextlib.contextmanager
def local_stage(prefix: str = "imbalance-stage-") -> Iterator[str]:
    """A fresh local directory for TensorFlow files bound for a remote path; removed when the body ends."""
    import tempfile

    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
