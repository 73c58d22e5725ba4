#!/bin/sh
# Wait until every container of the compose project is running and healthy;
# bounded by $1 seconds (default 180).  Shows progress; exits 1 on time-out,
# naming what is not healthy and the last lines of its log.
set -eu
project=${COMPOSE_PROJECT_NAME:-webstack}
limit=${1:-180}
start=$(date +%s)
last=""
while :; do
  states=$(docker ps -a --filter "label=com.docker.compose.project=$project" \
             --format '{{.Names}} {{.State}} {{.Status}}')
  waiting=$(echo "$states" | grep -v '(healthy)' || true)
  if [ -n "$states" ] && [ -z "$waiting" ]; then
    echo "all $(echo "$states" | wc -l) containers healthy"
    exit 0
  fi
  now=$(date +%s)
  if [ $((now - start)) -ge "$limit" ]; then
    echo "not healthy after ${limit}s:"
    echo "$waiting"
    for name in $(echo "$waiting" | awk '{print $1}'); do
      echo "--- $name"; docker logs --tail 20 "$name" 2>&1 || true
    done
    exit 1
  fi
  summary=$(echo "$waiting" | awk '{print $1}' | tr '\n' ' ')
  if [ "$summary" != "$last" ]; then echo "waiting for: $summary"; last=$summary; fi
  sleep 1
done
