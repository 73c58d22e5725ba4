#!/bin/sh
# `make swarm-load WORKERS=N`: one locust run on the swarm against the
# stack's front (swarm/load.yml): deploy the master and N workers as the
# stack <stack>-load, wait for the master's task to end, print its log
# (run.py's table and where the report is), remove the load stack, and
# exit with the run's status.  Bounded by $SWARM_LOAD_TIMEOUT (default 900
# s) for the run itself.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
stack=${SWARM_STACK:-webstack}
load=$stack-load
timeout=${SWARM_LOAD_TIMEOUT:-900}
workers=${WORKERS:-2}
image=${LOCUST_IMAGE_LOCAL:-webstack/locust:dev}

say() { echo "swarm-load: $*"; }
die() { echo "swarm-load: $*" >&2; exit 1; }

case $workers in ''|*[!0-9]*|0) die "WORKERS must be a number of workers, 1 or more, not '$workers'";; esac
docker network inspect "${stack}_edge" >/dev/null 2>&1 ||
  die "no stack $stack here (no network ${stack}_edge): make swarm-up first"

# A run cut short earlier leaves its stack: never two at once.
SWARM_STACK=$load SWARM_LEAVE=0 "$here/down.sh" >/dev/null

reports=$root/reports
mkdir -p "$reports"
LOCUST_IMAGE=$("$here/image.sh" "$image")
LOAD_NODE=$(docker info -f '{{.Swarm.NodeID}}')
export LOCUST_IMAGE LOAD_NODE WORKERS="$workers" REPORTS="$reports" SWARM_STACK="$stack"
export LOAD_UID="${LOAD_UID:-$(id -u)}" LOAD_GID="${LOAD_GID:-$(id -g)}"
resolve=never
[ -z "${REGISTRY:-}" ] || resolve=always

cleanup() { SWARM_STACK=$load SWARM_LEAVE=0 "$here/down.sh" >/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "master and $workers worker(s) against the front of $stack"
docker stack deploy --resolve-image "$resolve" -c "$here/load.yml" "$load" >/dev/null

# The master's task: running until the run is over, then complete (exit 0)
# or failed (a threshold broken, or locust's own error).
master=${load}_locust-master
start=$(date +%s)
while :; do
  state=$(docker service ps -q --no-trunc "$master" 2>/dev/null | head -n 1 |
          xargs -r docker inspect -f '{{.Status.State}} {{.Status.ContainerStatus.ExitCode}}' 2>/dev/null || true)
  case ${state%% *} in complete|failed|rejected|shutdown|orphaned) break;; esac
  if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
    docker service logs --raw --tail 50 "$master" 2>&1 || true
    die "the run did not end within ${timeout}s (SWARM_LOAD_TIMEOUT)"
  fi
  sleep 2
done
docker service logs --raw "$master" 2>&1 | sed 's|/app/reports/|reports/|g'
status=${state#* }
case $status in ''|*[!0-9]*) status=1;; esac
say "master ${state%% *}, exit status $status (reports in reports/)"
exit "$status"
