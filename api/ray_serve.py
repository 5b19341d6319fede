"""The service on Ray Serve: the same FastAPI app (`create_app`: routes, limits, errors,
page, OpenAPI, the WebSocket stream) as the ingress deployment, talking through a
`RayEngine` to a `Matcher` deployment of N replicas (or an autoscaled range).

    Ingress (1 replica, FastAPI)  --handle-->  Matcher (N replicas, one model load each)
      decode, RANSAC, drawing                  `Matcher.match` on its own worker thread

Each replica answers with its name, which the app puts in the `X-Replica` header; `/info`
lists the replicas alive. Back-pressure: a replica takes `MAX_ONGOING` requests (one
running, one waiting, so the next pair is already transferred) and the ingress queues at
most `queue_size` more per replica (the most replicas, when autoscaled), as many as one
plain server's worker queue holds; beyond that `/match` answers 503 `busy`, and a request held by a
replica that died answers 503 `replica_lost` (retry: the controller starts a new one).

Needs the `distributed` extra (`pip install -e ".[distributed]"`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from coarse_loftr.inference.batch.ray_pool import connect as connect_ray
from coarse_loftr.inference.errors import ResourceBusy

from .app import create_app, load_matchers
from .engine import LocalEngine, Matched, RemoteModel
from .settings import ServiceSettings

APP_NAME = "coarse-loftr"
MATCHER_DEPLOYMENT = "Matcher"
INGRESS_DEPLOYMENT = "Ingress"
# Requests one matcher replica holds: one running and one waiting in its worker queue.
MAX_ONGOING = 2
# Ray Serve's own prefix of a replica actor's name ("SERVE_REPLICA::<app>#<deployment>#<id>").
_REPLICA_ACTOR_PREFIX = f"SERVE_REPLICA::{APP_NAME}#{MATCHER_DEPLOYMENT}#"
_SERVE_NAMESPACE = "serve"


class ReplicaLost(ResourceBusy):
    """The replica holding the request stopped (crashed or was removed): retry."""

    code = "replica_lost"


@dataclass(frozen=True)
class RayOptions:
    """replicas: fixed number of matcher replicas; autoscale: (min, max) replicas instead,
    scaled on the requests each one holds; replica_cpus: CPUs Ray reserves per replica
    (also its runtime threads unless `num_threads` is set); address: a Ray cluster to join
    (None: start a local one on 127.0.0.1); num_cpus: CPUs of that local Ray (None: this
    machine's count)."""

    replicas: int = 2
    autoscale: tuple[int, int] | None = None
    replica_cpus: float = 1.0
    address: str | None = None
    num_cpus: int | None = None


class MatcherReplica:
    """The matcher deployment: loads the models once, matches on one worker thread."""

    def __init__(self, settings: ServiceSettings) -> None:
        uploads, live = load_matchers(settings)
        replica = serve.get_replica_context().replica_id.unique_id
        # The replica's own queue never fills: Serve hands it at most MAX_ONGOING requests.
        self.engine = LocalEngine(uploads, live, queue_size=MAX_ONGOING, replica=replica)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.engine.model.info,
            "live_model": self.engine.live_model.info,
            "backend": self.engine.backend_name,
        }

    async def match(self, image0: np.ndarray, image1: np.ndarray, live: bool, options: dict) -> Matched:
        return await self.engine.match(image0, image1, live=live, **options)


class RayEngine:
    """The `Engine` of the ingress: matches on the matcher deployment's replicas."""

    def __init__(self, handle: DeploymentHandle, card: dict[str, Any]) -> None:
        self.handle = handle
        self.model, self.live_model = RemoteModel(card["model"]), RemoteModel(card["live_model"])
        self.backend_name = card["backend"]

    @classmethod
    async def connect(cls, handle: DeploymentHandle) -> RayEngine:
        return cls(handle, await handle.describe.remote())

    async def match(self, image0: np.ndarray, image1: np.ndarray, live: bool, **options: Any) -> Matched:
        try:
            return await self.handle.match.remote(image0, image1, live, options)
        except BackPressureError:
            raise ResourceBusy("every replica is busy and the queue is full") from None
        except (RayActorError, ActorUnavailableError):
            raise ReplicaLost("the replica matching this request stopped; retry shortly") from None

    async def replicas(self) -> list[str]:
        return replica_names()

    async def close(self) -> None:
        pass


def replica_names() -> list[str]:
    """Names (Serve's replica ids, as in `X-Replica`) of the matcher replicas alive."""
    actors = ray.util.list_named_actors(all_namespaces=True)
    names = [a["name"] for a in actors if a["namespace"] == _SERVE_NAMESPACE]
    return sorted(n.removeprefix(_REPLICA_ACTOR_PREFIX) for n in names if n.startswith(_REPLICA_ACTOR_PREFIX))


def replica_actor(name: str):
    """The Ray actor of the matcher replica `name` (to kill it in a test)."""
    return ray.get_actor(_REPLICA_ACTOR_PREFIX + name, namespace=_SERVE_NAMESPACE)


@serve.ingress()
class Ingress:
    """The ingress deployment: `create_app` built in the replica (not pickled from the
    driver), matching through the handle of the matcher deployment."""

    def __init__(self, settings: ServiceSettings, matcher: DeploymentHandle) -> None:
        self.settings, self.matcher = settings, matcher

    def __serve_build_asgi_app__(self):
        return create_app(self.settings, engine_factory=lambda: RayEngine.connect(self.matcher))


def build_application(settings: ServiceSettings, options: RayOptions) -> serve.Application:
    """The Serve application: ingress + matcher deployments, bound to `settings`."""
    if settings.num_threads is None:
        # Without a limit every replica's runtime would use all the node's cores.
        settings = settings.model_copy(update={"num_threads": max(1, int(options.replica_cpus))})
    scale: dict[str, Any] = {"num_replicas": options.replicas}
    if options.autoscale is not None:
        low, high = options.autoscale
        scale = {
            "autoscaling_config": {
                "min_replicas": low,
                "max_replicas": high,
                "target_ongoing_requests": 1,
                # A pair takes ~0.1 s: react within seconds, not Serve's default 30.
                "upscale_delay_s": 5,
                "look_back_period_s": 10,
            }
        }
    matcher = serve.deployment(
        name=MATCHER_DEPLOYMENT,
        ray_actor_options={"num_cpus": options.replica_cpus},
        max_ongoing_requests=MAX_ONGOING,
        # `queue_size` waiting requests per replica, as one plain server's worker has.
        max_queued_requests=settings.queue_size * (options.autoscale or (0, options.replicas))[1],
        **scale,
    )(MatcherReplica)
    # The ingress only decodes, fits and draws between the event loop and the thread
    # pool: it takes no CPU reservation, so N one-CPU replicas fit on N cores.
    ingress = serve.deployment(
        name=INGRESS_DEPLOYMENT, num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256
    )(Ingress)
    return ingress.bind(settings, matcher.bind(settings))


def connect(options: RayOptions) -> bool:
    """Join the cluster at `options.address`, or start a local Ray on 127.0.0.1 with
    enough CPUs for the replicas. Returns whether this call started Ray."""
    needed = int(np.ceil(options.replica_cpus * (options.autoscale or (0, options.replicas))[1]))
    return connect_ray(options.address, options.num_cpus or max(os.cpu_count() or 1, needed))


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run_service(
    settings: ServiceSettings,
    options: RayOptions,
    host: str,
    port: int,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Deploy the application on Ray Serve at http://host:port and block until SIGINT or
    SIGTERM; then delete it and, if this process started Ray, stop Ray."""
    started = connect(options)
    # After connecting: ray.init installs a SIGTERM handler that exits without cleanup.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_application(settings, options), name=APP_NAME, route_prefix="/")
        replicas = ", ".join(replica_names())
        ray_at = ray.get_runtime_context().gcs_address
        on_ready(f"coarse-loftr on Ray Serve at http://{host}:{port} (Ray at {ray_at}; replicas: {replicas})")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if started:
            serve.shutdown()
        else:  # a cluster's Serve is not ours to stop: remove only this application
            serve.delete(APP_NAME)
        ray.shutdown()
