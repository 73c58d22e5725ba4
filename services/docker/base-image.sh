#!/bin/sh
# Print the name of the base image webstack's image is built FROM, making it
# first if it is not there.  Messages go to stderr; the name is the last line
# on stdout.
#
#   1. $BASE_IMAGE, if set: used as it is.
#   2. the official python:3.11-slim-$SUITE, if the engine has it or can pull it;
#   3. otherwise (no registry, as on this project's machines) webstack/pybase:$SUITE,
#      a Debian root filesystem with python3, python3-venv and ca-certificates
#      made by mmdebstrap from the mirrors the host's apt names, then `docker import`.
set -eu
suite=${SUITE:-bookworm}
official="python:3.11-slim-$suite"
local="webstack/pybase:$suite"
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-build}

say() { echo "base-image: $*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; exit 0; fi
if have "$official"; then echo "$official"; exit 0; fi
if have "$local"; then echo "$local"; exit 0; fi

say "trying to pull $official"
if timeout 90 docker pull -q "$official" >/dev/null 2>&1; then
  echo "$official"; exit 0
fi

say "no registry answers: building $local from Debian packages (about a minute)"
if ! command -v mmdebstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing mmdebstrap with apt-get"
    apt-get install -y -qq mmdebstrap >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq mmdebstrap >/dev/null; }
  else
    say "mmdebstrap is needed (Debian: apt-get install mmdebstrap), or set BASE_IMAGE"
    exit 1
  fi
fi
mkdir -p "$build"
python3 "$here/debian_sources.py" "$suite" > "$build/sources.list"
mode=root
[ "$(id -u)" = 0 ] || mode=unshare
# Documentation, man pages and locales are left out (copyright files kept);
# the apt sources naming the build host's mirror are removed from the image.
mmdebstrap --quiet --mode="$mode" --variant=apt \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*' \
  "$suite" "$build/rootfs-$suite.tar" "$build/sources.list" >&2
# An imported image has no ENV or CMD at all: give it what python:*-slim has.
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$build/rootfs-$suite.tar" "$local" >/dev/null
rm -f "$build/rootfs-$suite.tar"
say "made $local"
echo "$local"
