"""Pairs spread over Ray actors, each holding one matcher (the model loads once per
actor, not per pair).

Back-pressure: at most `in_flight` pairs are submitted and not yet collected (default
two per actor: one matching, one waiting at the actor, so an actor never idles for a
transfer). The driver reads encoded files only, just ahead of submitting them, and
each actor decodes one pair at a time, so at most 2 x `in_flight` encoded images sit in
the object store and 2 x actors decoded images exist in the cluster, whatever the
length of the pairs list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import ray
from ray._private import ray_constants
from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray.exceptions import RayError

from .runner import MatchSettings, PairJob, match_job
from .store import PairOutcome

_LOOPBACK_ONLY = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR


@ray.remote(max_restarts=1, max_task_retries=1)
class PairActor:
    """A matcher in a Ray worker; `match` runs one pair (calls run one at a time)."""

    def __init__(self, settings: MatchSettings) -> None:
        self.settings = settings
        self.matcher = settings.matcher()

    def ready(self) -> bool:
        return True

    def match(self, job: PairJob) -> PairOutcome:
        return match_job(self.matcher, job, self.settings)


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at `address`, or (None or "local") start a Ray on 127.0.0.1
    with `num_cpus` (None: this machine's count). Returns whether this call started Ray
    (and so should stop it)."""
    if ray.is_initialized():
        return False
    if address in (None, "local") or address.split(":")[0] in ("127.0.0.1", "localhost"):
        # Ray turns 127.0.0.1 into the machine's network address unless it believes it
        # runs on a laptop (Windows / macOS): say so, for this process and the raylet,
        # GCS and workers it starts, so that a local Ray listens and is reached on
        # loopback only.
        os.environ[_LOOPBACK_ONLY] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
        # A local Ray uses token authentication when this user has a token (Ray's own rule
        # for `ray.init()` and `address="auto"`); joining it by address must do the same.
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    if address in (None, "local"):
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
    else:
        ray.init(address=address, log_to_driver=False)
    return True


class RayPool:
    """actors: how many (None: the cluster's CPUs / actor_cpus); actor_cpus: CPUs Ray
    reserves per actor (also its runtime threads unless settings.num_threads is set)."""

    def __init__(
        self,
        settings: MatchSettings,
        actors: int | None = None,
        actor_cpus: float = 1.0,
        in_flight: int | None = None,
    ) -> None:
        if settings.num_threads is None:
            settings = MatchSettings(**{**settings.__dict__, "num_threads": max(1, int(actor_cpus))})
        self.settings = settings
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // actor_cpus))
        actor_class = PairActor.options(num_cpus=actor_cpus)  # type: ignore[attr-defined]
        self.actors = [actor_class.remote(settings) for _ in range(count)]
        self.in_flight = in_flight or 2 * count
        # Every model loaded before the first pair: a bad --weights fails here, once.
        ray.get([actor.ready.remote() for actor in self.actors])

    def imap(self, jobs: Iterator[PairJob]) -> Iterator[PairOutcome]:
        pending: dict[ray.ObjectRef, tuple[int, PairJob]] = {}  # result -> (actor index, job)
        load = [0] * len(self.actors)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < self.in_flight:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                actor = min(range(len(self.actors)), key=load.__getitem__)  # least loaded
                pending[self.actors[actor].match.remote(job)] = actor, job
                load[actor] += 1
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                actor, job = pending.pop(ref)
                load[actor] -= 1
                try:
                    outcome = ray.get(ref)
                except RayError as error:  # the actor died twice on this pair
                    outcome = PairOutcome.failed(job.pair, self.settings.ransac, f"worker lost: {error}")
                yield outcome

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
