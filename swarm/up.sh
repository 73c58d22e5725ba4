#!/bin/sh
# `make swarm-up`: deploy the stack on Docker Swarm and wait until it has
# converged and the front answers.
#
#   1. The swarm: one this engine is in is used as it is (it must be a
#      manager); with none, a single-node swarm is made (advertising
#      $SWARM_ADVERTISE), and $STATE/made-swarm remembers it, so that
#      `make swarm-down` leaves that swarm and no other.  Before making it,
#      the node's docker_gwbridge (the network a task's published host-mode
#      port is bound through) is made with host_binding_ipv4=$SWARM_BIND, as
#      swarm's own port settings have no host address.
#   2. The image: $IMAGE (built by `make images`) as swarm/image.sh names it:
#      by its own ID (so a rebuilt image rolls the services onto it), under
#      $REGISTRY and pushed there when set (for the other nodes).
#   3. The configs and secrets, rendered from config/ (swarm/content.py).
#   4. docker stack deploy (with $SWARM_EXTRA's files last), then
#      swarm/converge.py; then this stack's configs and secrets that no
#      service uses any more are removed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
stack=${SWARM_STACK:-webstack}
publish=${SWARM_PUBLISH:-8080}
bind=${SWARM_BIND:-127.0.0.1}
advertise=${SWARM_ADVERTISE:-127.0.0.1}
image=${IMAGE:-webstack/service:dev}
registry=${REGISTRY:-}
timeout=${SWARM_TIMEOUT:-300}
state=${STATE:-$root/build/swarm}
python=${PYTHON:-python3}

say() { echo "swarm-up: $*"; }
die() { echo "swarm-up: $*" >&2; exit 1; }

case $publish in ''|*[!0-9]*) die "SWARM_PUBLISH must be a port number, not '$publish'";; esac
[ "$publish" -ge 1 ] && [ "$publish" -le 65535 ] || die "SWARM_PUBLISH must be 1-65535, not $publish"
mkdir -p "$state"

gwbridgeBinding() {
  docker network inspect docker_gwbridge \
    -f '{{index .Options "com.docker.network.bridge.host_binding_ipv4"}}' 2>/dev/null || true
}

node_state=$(docker info -f '{{.Swarm.LocalNodeState}}')
case $node_state in
  inactive)
    gwbridge=found
    if ! docker network inspect docker_gwbridge >/dev/null 2>&1; then
      docker network create --driver bridge \
        --opt com.docker.network.bridge.name=docker_gwbridge \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=true \
        --opt com.docker.network.bridge.host_binding_ipv4="$bind" \
        docker_gwbridge >/dev/null
      gwbridge=made
    elif [ "$(gwbridgeBinding)" != "$bind" ]; then
      die "docker_gwbridge (left by an earlier swarm) binds published ports on" \
          "'$(gwbridgeBinding)', not $bind: remove it (docker network rm docker_gwbridge)" \
          "or set SWARM_BIND"
    fi
    say "no swarm here: making a single-node one (advertising $advertise)"
    docker swarm init --advertise-addr "$advertise" >/dev/null
    printf 'node=%s\ngwbridge=%s\n' "$(docker info -f '{{.Swarm.NodeID}}')" "$gwbridge" \
      > "$state/made-swarm"
    ;;
  active)
    [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] ||
      die "this node is a swarm worker: run make swarm-up on a manager"
    say "using the swarm this engine is in (make swarm-down will not leave it)"
    ;;
  *) die "this engine's swarm state is '$node_state': fix that first (docker info)";;
esac
binding=$(gwbridgeBinding)
if [ -z "$binding" ]; then
  say "note: this swarm's docker_gwbridge sets no host address, so the front's port" \
      "$publish is open on every address of the node that runs it"
elif [ "$binding" != "$bind" ]; then
  say "note: this swarm's docker_gwbridge binds published ports on $binding"
fi

deployed=$("$here/image.sh" "$image")
resolve=never
auth=
if [ -n "$registry" ]; then
  # Every node pulls it by digest from there, with this client's login.
  resolve=always
  auth=--with-registry-auth
fi

# More stack files, merged over these (placement, replicas, limits for a
# cluster): SWARM_EXTRA="a.yml b.yml"; swarm/placement.example.yml is one.
extra=
for file in ${SWARM_EXTRA:-}; do
  [ -f "$file" ] || die "SWARM_EXTRA names $file, which is not a file"
  extra="$extra -c $file"
done

content=$state/$stack.content.json
"$python" "$here/content.py" "$stack" "$root/config" "$content"

say "deploying stack $stack ($deployed, front on port $publish)"
WEBSTACK_IMAGE=$deployed SWARM_PUBLISH=$publish \
  docker stack deploy --prune --resolve-image "$resolve" $auth \
    -c "$here/stack.yml" -c "$content" $extra "$stack"
"$python" "$here/converge.py" "$stack" --port "$publish" --timeout "$timeout"

# Configs and secrets of this stack left from earlier deploys: removing one
# a service still uses fails, and is left for next time.
for kind in config secret; do
  docker "$kind" ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}}' |
    while read -r name; do
      grep -q "\"$name\"" "$content" || docker "$kind" rm "$name" >/dev/null 2>&1 || true
    done
done
say "webstack is up on the swarm: http://127.0.0.1:$publish/  (make swarm-ps, make swarm-down)"
