"""Scoring shards on Ray: a pool of actors, each loading the models once, fed shards as they free up.

Only ``evaluate --ray`` imports this module (Ray is optional: ``bootstrap/requirements-ray.txt``).
Every actor is a process holding the :class:`~dl_vision.evaluation.predictions.ModelPredictions`
built from the same :class:`~dl_vision.evaluation.predictions.ModelSettings`; it reads its shards'
frames from the bags itself (so bags must be at the same path on every node) and sends back only
the shard's compact :class:`~dl_vision.evaluation.offline.ShardResult`. The metrics are computed
at the driver. An actor process that dies mid-shard (killed, out of memory, node lost) is
restarted by Ray and the shard is scored again from its start, so that no frame is lost or
counted twice; after ``max_retries`` such deaths the shard fails and its bag is reported as an error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import ray
from ray.exceptions import RayActorError, RayTaskError

from dl_vision.errors import DlVisionError, EvaluationError
from dl_vision.evaluation.fleet import CocoFiles, Executor, Outcome
from dl_vision.evaluation.offline import Shard, ShardResult, score_shard
from dl_vision.evaluation.predictions import ModelSettings, PredictionInfo


def connect(address: str) -> None:
    """Join Ray, unless this process already has.

    Args:
        address: ``local`` starts a new Ray instance on this machine (even where ``ray start``
            left one); ``auto`` joins the cluster this machine belongs to (``ray start``); anything
            else is a cluster address (``host:6379`` from a cluster node, ``ray://host:10001``
            through Ray Client).

    Raises:
        EvaluationError: Ray cannot start or reach the address.
    """
    if ray.is_initialized():
        return
    options: Dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise EvaluationError("ray: cannot join %s (%s)" % (address, _first_line(err))) from err


class ShardWorker:
    """The actor: loads the models once, then scores one shard per call.

    A model that does not load is kept as the error every call raises, so that the driver gets
    its one-line message rather than an actor that died in its constructor.
    """

    def __init__(self, settings: ModelSettings) -> None:
        self._coco = CocoFiles()
        self._error: Optional[DlVisionError] = None
        try:
            self._predictions = settings.build()
        except DlVisionError as err:
            self._error = err

    def info(self) -> PredictionInfo:
        """The models' name, batch size, labels and operating threshold."""
        self._check()
        return self._predictions.info()

    def score(self, shard: Shard) -> ShardResult:
        """Score one shard (see :func:`~dl_vision.evaluation.offline.score_shard`)."""
        self._check()
        return score_shard(shard, self._predictions, self._coco.get(shard))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error


class RayExecutor(Executor):
    """Scores shards on a pool of Ray actors (largest shards first, each to the next free actor).

    Args:
        settings: the models every actor loads.
        address: where Ray runs (see :func:`connect`).
        actors: pool size; default: as many as the cluster's free CPUs (and GPUs) hold, at most
            one per shard.
        actor_cpus: CPUs Ray reserves for each actor; also its inference threads where the
            backend takes ``threads`` and ``settings`` sets none.
        actor_gpus: GPUs Ray reserves for each actor (a fraction shares a GPU); default: 1 when a
            spec's runtime runs on a GPU (see :meth:`ModelSettings.uses_gpu`), else 0.
        max_retries: times a shard is scored again after its worker died.
    """

    def __init__(
        self,
        settings: ModelSettings,
        address: str = "local",
        actors: Optional[int] = None,
        actor_cpus: float = 1.0,
        actor_gpus: Optional[float] = None,
        max_retries: int = 2,
    ) -> None:
        self.settings = settings
        self.address = address
        self.actors = actors
        self.actor_cpus = actor_cpus
        self.actor_gpus = (1.0 if settings.uses_gpu() else 0.0) if actor_gpus is None else actor_gpus
        self.max_retries = max_retries
        self.warnings: List[str] = []
        self._pool: List[Any] = []
        self._info: Optional[PredictionInfo] = None
        self._retried = 0
        self._workers: Dict[str, int] = {}

    def start(self, shards: int) -> None:
        if self._pool:
            return
        connect(self.address)
        settings = self.settings
        if "threads" not in settings.runtime and settings.takes_runtime_option("threads"):
            threads = max(1, int(self.actor_cpus))
            settings = dataclasses.replace(settings, runtime=dict(settings.runtime, threads=threads))
        count = max(1, min(self.actors or self._fitting_actors(), max(shards, 1)))
        actor = ray.remote(ShardWorker).options(
            num_cpus=self.actor_cpus,
            num_gpus=self.actor_gpus,
            max_restarts=-1,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        )
        self._pool = [actor.remote(settings) for _ in range(count)]
        try:
            self._info = ray.get([a.info.remote() for a in self._pool])[0]
        except RayTaskError as err:
            self.close()
            if isinstance(err.cause, DlVisionError):
                raise EvaluationError("ray worker: %s" % err.cause) from None
            raise
        except RayActorError as err:
            self.close()
            raise EvaluationError("ray: a worker died while loading the models (%s)" % _first_line(err)) from None

    def _fitting_actors(self) -> int:
        resources = ray.available_resources()
        count = int(resources.get("CPU", 0) // self.actor_cpus) if self.actor_cpus else len(ray.nodes())
        if self.actor_gpus:
            count = min(count, int(resources.get("GPU", 0) // self.actor_gpus))
        if count < 1:
            raise EvaluationError(
                "ray: an actor needs %g CPUs and %g GPUs, the cluster has %g CPUs and %g GPUs free"
                % (self.actor_cpus, self.actor_gpus, resources.get("CPU", 0), resources.get("GPU", 0))
            )
        return count

    def info(self) -> PredictionInfo:
        self.start(1)
        return self._info

    def run(self, shards: Sequence[Shard]) -> Iterator[Tuple[Shard, Outcome]]:
        self.start(len(shards))
        pending: Deque[Shard] = deque(sorted(shards, key=lambda s: -s.frames))
        deaths: Dict[Tuple[int, int], int] = {}
        idle = list(self._pool)
        running: Dict[Any, Tuple[Optional[Shard], Any]] = {}  # a None shard: probing a restarted actor
        failed_probes: Dict[int, int] = {}
        while pending or any(shard is not None for shard, _ in running.values()):
            while idle and pending:
                shard, actor = pending.popleft(), idle.pop()
                running[actor.score.remote(shard)] = (shard, actor)
            if not running:
                for shard in pending:
                    yield shard, "no Ray worker left to score it"
                return
            (ref,), _ = ray.wait(list(running), num_returns=1)
            shard, actor = running.pop(ref)
            if shard is None:
                self._probed(ref, actor, idle, running, failed_probes)
                continue
            try:
                result = ray.get(ref)
            except RayActorError as err:
                # Ray restarts the actor; it gets work again once it answers a probe.
                running[actor.info.remote()] = (None, actor)
                key = (shard.bag_index, shard.number)
                deaths[key] = deaths.get(key, 0) + 1
                if deaths[key] > self.max_retries:
                    yield shard, "its worker died %d times (%s)" % (deaths[key], _first_line(err))
                else:
                    self._retried += 1
                    self.warnings.append(
                        "%s: its worker died (%s); scored again" % (shard.describe(), _first_line(err))
                    )
                    pending.appendleft(shard)
                continue
            except RayTaskError as err:
                idle.append(actor)
                if isinstance(err.cause, DlVisionError):
                    yield shard, str(err.cause)
                    continue
                raise
            idle.append(actor)
            self._workers[result.worker] = self._workers.get(result.worker, 0) + 1
            yield shard, result

    def _probed(self, ref: Any, actor: Any, idle: List[Any], running: Dict[Any, Any], failed: Dict[int, int]) -> None:
        """A restarted actor answered its probe (back to work), or did not (probe again, or drop it)."""
        try:
            ray.get(ref)
        except (RayActorError, RayTaskError) as err:
            failed[id(actor)] = failed.get(id(actor), 0) + 1
            if isinstance(err, RayActorError) and failed[id(actor)] <= self.max_retries:
                running[actor.info.remote()] = (None, actor)
            else:
                self._pool.remove(actor)
                self.warnings.append("a Ray worker did not come back after dying (%s); dropped" % _first_line(err))
            return
        failed.pop(id(actor), None)
        idle.append(actor)

    def describe(self) -> Dict[str, Any]:
        return {
            "runner": "ray",
            "address": self.address,
            "actors": len(self._pool),
            "actor_cpus": self.actor_cpus,
            "actor_gpus": self.actor_gpus,
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "retried_shards": self._retried,
            "shards_per_worker": dict(self._workers),
        }

    def close(self) -> None:
        for actor in self._pool:
            ray.kill(actor)
        self._pool = []


def _first_line(err: Exception) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
