"""`tf.distribute` strategies for training: one device, all local devices, or several machines.

``"default"`` is TensorFlow's no-op strategy (one device, the behaviour without
``--strategy``). ``"mirrored"`` is `tf.distribute.MirroredStrategy` over the local
GPUs (the CPU when there is none). ``"multiworker"`` is
`tf.distribute.MultiWorkerMirroredStrategy`, configured by the ``TF_CONFIG``
environment variable of each worker process::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}'

Worker 0 is the chief: it alone writes into the real run folder. Every other worker
writes its (identical) checkpoints and weights under ``<run>/.worker<index>/``, the
pattern of TensorFlow's multi-worker guide, because all workers must take part in a
save (reading synchronised variables is a collective operation).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from qa_headpose.training._keras import tf

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")

# How long a worker may miss its heartbeats before the coordination service declares it
# dead and aborts every worker. TensorFlow's own default (10 s) aborted a healthy 2-worker
# run on a busy 2-core CI machine (both tasks "heartbeat timeout" while tracing the QAT
# graph); a dead worker is still found within this time.
HEARTBEAT_TIMEOUT_S = 120


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Creates the named strategy.

    ``"multiworker"`` must be created before TensorFlow runs any operation in the
    process (TensorFlow's rule for collective ops), and once per process.

    Args:
        name: one of `STRATEGIES`.

    Returns:
        The strategy; ``num_replicas_in_sync`` is the number of model copies a global
        batch is split across.

    Raises:
        ValueError: for an unknown name, or ``"multiworker"`` without a valid ``TF_CONFIG``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        cluster = read_tf_config()
        logger.info("MultiWorkerMirroredStrategy: %s", cluster)
        _configure_coordination_service(cluster["cluster"], HEARTBEAT_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")


def _configure_coordination_service(cluster: dict, heartbeat_timeout_s: int) -> None:
    """Sets up TensorFlow's coordination service as the strategy would, with our heartbeat timeout.

    The strategy keeps a service configured before it is created; TensorFlow has no public
    call for the timeout, so this uses the one its strategies call (``context``).
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    spec = tf.train.ClusterSpec(cluster)
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
        for job in ("chief", "worker")
        if job in spec.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs,
        heartbeat_timeout_in_ms=heartbeat_timeout_s * 1000,
    )


def read_tf_config() -> dict:
    """The parsed ``TF_CONFIG`` of a multi-worker run.

    Raises:
        ValueError: if it is missing, not JSON, or lacks ``cluster``/``task``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy multiworker needs TF_CONFIG, e.g. "
            '\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}\''
        )
    try:
        config = json.loads(raw)
        config["cluster"], config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"TF_CONFIG must be JSON with 'cluster' and 'task' {{type, index}}: {exc}. Received: {raw!r}"
        ) from None
    return config


def task_index(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, task index) of this process; (None, 0) outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run folder (always, outside a multi-worker cluster)."""
    task_type, index = task_index(strategy)
    return task_type in (None, "chief") or (task_type == "worker" and index == 0 and not _has_chief(strategy))


def _has_chief(strategy: tf.distribute.Strategy) -> bool:
    return "chief" in strategy.cluster_resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for a `MultiWorkerMirroredStrategy` (whose collectives span processes)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_dir(run_dir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: ``run_dir`` for the chief, ``run_dir/.worker<index>`` otherwise."""
    if is_chief(strategy):
        return Path(run_dir)
    return Path(run_dir) / f".worker{task_index(strategy)[1]}"


def check_same_on_all_workers(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Raises if ``value`` differs between replicas (e.g. workers resuming from different epochs).

    Every worker must call this at the same point: it is an all-reduce.

    Raises:
        ValueError: on a worker whose value is not the cluster's mean.
    """
    replicas = strategy.num_replicas_in_sync

    @tf.function  # a collective run eagerly is slow and warns
    def _total():
        per_replica = strategy.run(lambda: tf.constant(int(value), tf.int64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, None)

    total = _total()
    if int(total) != int(value) * replicas:
        raise ValueError(
            f"The workers disagree on the {what}: {int(value)} here, {int(total) / replicas:g} on average. "
            "Resume every worker from the chief's checkpoints (a folder shared by all machines)."
        )
