#!/bin/sh
# `make swarm-down`: remove the stack (services, networks, configs,
# secrets) and wait until all of it is gone; then, if `make swarm-up` made
# this engine's swarm ($STATE/made-swarm names its node) and no service of
# anyone else is left in it, leave that swarm and remove the docker_gwbridge
# made for it.  A swarm this project did not make is never left.
# Bounded: $SWARM_TIMEOUT seconds (default 120) for the removal.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
stack=${SWARM_STACK:-webstack}
timeout=${SWARM_TIMEOUT:-120}
state=${STATE:-$root/build/swarm}
marker=$state/made-swarm
label=label=com.docker.stack.namespace=$stack

say() { echo "swarm-down: $*"; }

leftovers() {
  for kind in service network config secret; do
    docker "$kind" ls -q --filter "$label" | sed "s/^/$kind /"
  done
}

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" = active ]; then
  if [ -n "$(leftovers)" ]; then
    say "removing stack $stack"
    docker stack rm "$stack" >/dev/null
  fi
  start=$(date +%s)
  while :; do
    left=$(leftovers)
    [ -z "$left" ] && break
    if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
      say "still there after ${timeout}s:" $left >&2
      exit 1
    fi
    # A network goes once the last task on it has stopped (each drains for
    # up to its stop_grace_period); ask again for whatever is left.
    for id in $(echo "$left" | awk '$1 != "service" {print $1 ":" $2}'); do
      docker "${id%%:*}" rm "${id#*:}" >/dev/null 2>&1 || true
    done
    sleep 1
  done
  say "stack $stack removed"
fi

# SWARM_LEAVE=0: the stack only (swarm/load.sh's own stack).
[ "${SWARM_LEAVE:-1}" = 1 ] && [ -f "$marker" ] || exit 0
made=$(sed -n 's/^node=//p' "$marker")
node=$(docker info -f '{{.Swarm.NodeID}}')
if [ -z "$node" ]; then
  # Left already (by hand): the docker_gwbridge made for it is still ours.
  if grep -q '^gwbridge=made' "$marker"; then
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
  fi
  rm -f "$marker"
  exit 0
fi
if [ "$node" != "$made" ]; then
  # Another swarm since: not ours to leave.
  rm -f "$marker"
  exit 0
fi
others=$(docker service ls --format '{{.Name}}' | tr '\n' ' ')
if [ -n "$others" ]; then
  say "staying in the swarm make swarm-up made: other services run in it ($others)"
  exit 0
fi
say "leaving the single-node swarm make swarm-up made"
docker swarm leave --force >/dev/null
if grep -q '^gwbridge=made' "$marker"; then
  # Its last endpoints go with the swarm's, a moment after leaving.
  start=$(date +%s)
  until docker network rm docker_gwbridge >/dev/null 2>&1 ||
        ! docker network inspect docker_gwbridge >/dev/null 2>&1; do
    if [ $(( $(date +%s) - start )) -ge 30 ]; then
      say "docker_gwbridge is still in use after 30s; remove it later" >&2
      break
    fi
    sleep 1
  done
fi
rm -f "$marker"
