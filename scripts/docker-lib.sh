# Shared by the docker scripts (sourced, not run). Starts dockerd only when no daemon answers and
# stops only a daemon it started itself, by the pid it recorded.
#   docker_up      ensure a daemon answers on the default socket (starts one if needed)
#   docker_down    stop the daemon docker_up started, if it started one
#   debian_mirror  the Debian mirror (and debian_security_mirror) this host's apt uses
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
DOCKERD_STARTED_PID=""

docker_up() {
  command -v docker >/dev/null || { echo "docker is not installed: make docker-deps" >&2; return 1; }
  docker info >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null || { echo "no docker daemon answers and dockerd is not installed: make docker-deps" >&2; return 1; }
  mkdir -p "$cache/docker"
  # No default bridge, no iptables rules, no sysctl changes: CodeIntel's containers use the host
  # network (deploy/compose.test.yml) and image builds run with --network host.
  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$cache/docker/dockerd.log" 2>&1 &
  DOCKERD_STARTED_PID=$!
  echo "started dockerd (pid $DOCKERD_STARTED_PID, log $cache/docker/dockerd.log)"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_STARTED_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not come up in 30 s; last log lines:" >&2
  tail -n 15 "$cache/docker/dockerd.log" >&2
  docker_down
  return 1
}

docker_down() {
  [ -n "$DOCKERD_STARTED_PID" ] || return 0
  local pid=$DOCKERD_STARTED_PID
  DOCKERD_STARTED_PID=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { echo "stopped dockerd (pid $pid)"; return 0; }
    sleep 0.5
  done
  echo "dockerd (pid $pid) did not stop in 30 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# First Debian archive URI (suite bookworm*) in apt's sources, one-line or deb822 format.
_apt_uris() {
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }'
  } | sed 's:/*$::'
}
debian_mirror() {
  echo "${DEBIAN_MIRROR:-$(_apt_uris | grep -E '/debian$' | head -n 1 | grep . || echo http://deb.debian.org/debian)}"
}
debian_security_mirror() {
  echo "${DEBIAN_SECURITY_MIRROR:-$(_apt_uris | grep -E '/debian-security$' | head -n 1 | grep . || echo http://deb.debian.org/debian-security)}"
}
