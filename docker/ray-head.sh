#!/bin/sh
# Start a Ray head in this container, then run `coarse-loftr "$@"` in the foreground
# (it joins the head with --ray-address auto and gets the container's SIGTERM).
set -e
: "${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN to a secret shared by the head and the workers}"
ray start --head --port=6379 --num-cpus="${RAY_HEAD_CPUS:-1}" --include-dashboard=false --disable-usage-stats
exec coarse-loftr "$@"
