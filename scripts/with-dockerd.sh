#!/usr/bin/env bash
# Runs a command with a docker daemon: the running one, or one started for the command and
# stopped after it (by its pid). Usage: scripts/with-dockerd.sh CMD [ARGS...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/docker-lib.sh"
trap docker_down EXIT
trap 'exit 130' INT TERM
docker_up || exit 1
"$@"
