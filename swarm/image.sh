#!/bin/sh
# Print the name a swarm deploys a locally built image by: IMAGE tagged
# with its own ID (a rebuilt image is a new name, so a new service spec,
# and the services roll onto it), and, with $REGISTRY, that name under the
# registry, pushed there for the other nodes.  Without a registry only this
# node has the image: enough for a single-node swarm, which needs none.
#
#   swarm/image.sh webstack/service:dev   ->  webstack/service:swarm-0123456789ab
set -eu
image=$1
registry=${REGISTRY:-}
docker image inspect "$image" >/dev/null 2>&1 || {
  echo "swarm: no image $image here: 'make images' (or 'make swarm-up') builds it" >&2; exit 1; }
id=$(docker image inspect -f '{{.Id}}' "$image" | sed 's/^sha256://' | cut -c1-12)
name=${image%:*}:swarm-$id
[ -z "$registry" ] || name=${registry%/}/$name
docker tag "$image" "$name"
if [ -n "$registry" ]; then
  echo "swarm: pushing $name" >&2
  docker push -q "$name" >/dev/null
fi
echo "$name"
