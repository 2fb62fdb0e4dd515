"""`python -m serving.server`: a TF Serving-compatible model server.

Flags are named as tensorflow_model_server's, so scripts written for it work:

  python -m serving.server --model_name=imbalance \\
      --model_base_path=runs/t/serving_model --port=8500 --rest_api_port=8501
  python -m serving.server --model_config_file=models.config \\
      --model_config_file_poll_wait_seconds=60 --rest_api_port=8501
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# serving.app is imported when the server starts, not with this module: TF Serving's protos live in the
# tensorflow package, so importing them loads TensorFlow (and Keras) — seconds a script that only imports
# `serving.server` (or the tests that check this, tests/test_layout.py) should not pay.


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    from serving.app import ServerOptions
    from serving.batching import BatchingOptions

    DEFAULTS = ServerOptions(model_name="default", model_base_path="")  # every default is ServerOptions'
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model_name", default=DEFAULTS.model_name,
                        help="Name clients address the model by (ignored with --model_config_file).")
    parser.add_argument("--model_base_path", default="",
                        help="Directory holding <version>/ SavedModels (ignored with --model_config_file, "
                             "otherwise required).")
    parser.add_argument("--model_config_file", default="",
                        help="A text-format tensorflow.serving.ModelServerConfig: several models, version "
                             "policies and labels.")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0,
                        help="Seconds between re-reads of --model_config_file (<= 0: read once).")
    parser.add_argument("--allow_version_labels_for_unavailable_models", type=_boolean, nargs="?", const=True,
                        default=False, help="Allow a new version label to name a version that is not loaded yet.")
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help="gRPC port (0: disabled, as TF Serving).")
    parser.add_argument("--rest_api_port", type=int, default=DEFAULTS.rest_api_port or 0,
                        help="REST port (0: disabled, as TF Serving).")
    parser.add_argument("--monitoring_config_file", default="",
                        help="A text-format tensorflow.serving.MonitoringConfig (Prometheus endpoint on the "
                             "REST port).")
    parser.add_argument("--host", default=DEFAULTS.host, help="Address to bind (loopback unless told otherwise).")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=DEFAULTS.file_system_poll_wait_seconds,
                        help="Seconds between scans for new versions (<= 0: load once).")
    parser.add_argument("--enable_batching", type=_boolean, nargs="?", const=True, default=False,
                        help="Merge concurrent requests into batched calls.")
    parser.add_argument("--max_batch_size", type=int, default=BatchingOptions.max_batch_size)
    parser.add_argument("--batch_timeout_micros", type=int, default=BatchingOptions.batch_timeout_micros)
    parser.add_argument("--max_enqueued_batches", type=int, default=BatchingOptions.max_enqueued_batches)
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULTS.max_request_bytes,
                        help="Largest REST request body accepted (413 beyond).")
    parser.add_argument("--grpc_max_threads", type=int, default=DEFAULTS.grpc_max_threads)
    parser.add_argument("--rest_api_num_threads", type=int, default=DEFAULTS.rest_api_num_threads,
                        help="Threads running REST requests' models (connections share one event loop).")
    parser.add_argument("--max_num_load_retries", type=int, default=DEFAULTS.max_num_load_retries)
    parser.add_argument("--request_log_queue_size", type=int, default=DEFAULTS.request_log.queue_size,
                        help="Logged requests waiting to be written (per logging_config); more are dropped "
                             "and counted, never waited for.")
    parser.add_argument("--request_log_max_file_bytes", type=int, default=DEFAULTS.request_log.max_file_bytes,
                        help="A request log file is closed and the next one started past this size.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.model_base_path and not args.model_config_file:
        parser.error("one of --model_base_path and --model_config_file is required")
    if args.max_batch_size < 1 or args.batch_timeout_micros < 0 or args.max_request_bytes < 1:
        print("error: --max_batch_size and --max_request_bytes must be >= 1, --batch_timeout_micros >= 0",
              file=sys.stderr)
        return 2
    if args.request_log_queue_size < 1 or args.request_log_max_file_bytes < 1:
        print("error: --request_log_queue_size and --request_log_max_file_bytes must be >= 1", file=sys.stderr)
        return 2
    base_path = args.model_base_path
    if base_path and "://" in base_path:  # object storage (trainer/storage.py): a bad URL or bucket is one line
        from trainer import storage

        try:
            storage.scheme(base_path)
            storage.check_bucket(base_path)
        except OSError as error:
            print(f"error: --model_base_path {error}", file=sys.stderr)
            return 2
    elif base_path:
        base_path = os.path.abspath(base_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from serving.app import ServerOptions, serve
    from serving.batching import BatchingOptions
    from serving.log_collector import CollectorOptions

    batching = (BatchingOptions(args.max_batch_size, args.batch_timeout_micros, args.max_enqueued_batches)
                if args.enable_batching else None)
    options = ServerOptions(
        model_name=args.model_name,
        model_base_path=base_path or "",
        port=args.port or None,
        rest_api_port=args.rest_api_port or None,
        host=args.host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        batching=batching,
        max_request_bytes=args.max_request_bytes,
        grpc_max_threads=args.grpc_max_threads,
        rest_api_num_threads=args.rest_api_num_threads,
        max_num_load_retries=args.max_num_load_retries,
        model_config_file=os.path.abspath(args.model_config_file) if args.model_config_file else None,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        monitoring_config_file=os.path.abspath(args.monitoring_config_file) if args.monitoring_config_file else None,
        request_log=CollectorOptions(args.request_log_queue_size, args.request_log_max_file_bytes),
    )
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
