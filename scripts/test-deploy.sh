#!/usr/bin/env bash
# The deployment test (`make test-deploy`, the end of `make test`): the mesh in containers, from the
# outside. Builds the image from the release binaries already built, starts docker-compose.yml with
# deploy/compose.test.yml (host network, 127.0.0.1 only, ports 55051-55054 / 55101-55104 / 56379),
# indexes tests/e2e/fixtures/shop through the indexer container, and streams Answers with the host's
# `codeintel ask`: citations `shop/path:start-end`; with vector-svc stopped, a `dense_*` limit and
# still citations; with it started again, no `dense_*` limit. Everything it started is removed on
# exit (docker compose down -v; dockerd too when it started it). Every wait is bounded.
# Usage: scripts/test-deploy.sh [BIN_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/docker-lib.sh"
bin=$(cd "${1:-${CARGO_TARGET_DIR:-$cache/target}/release}" && pwd)
image=${CODEINTEL_IMAGE:-codeintel:dev}
redis_image=codeintel-redis:bookworm
# Fixed by deploy/compose.test.yml.
answer=127.0.0.1:55051
ports="55051 55052 55053 55054 55101 55102 55103 55104 56379"
question="how does the rate limiter refill its tokens?"

# A developer's settings must not leak in: compose reads CODEINTEL_*/COMPOSE_* for interpolation
# and .env, `codeintel ask` reads CODEINTEL__* and CODEINTEL_CONFIG.
for v in $(compgen -e); do
  case $v in
    CODEINTEL_CACHE | CODEINTEL_IMAGE | CODEINTEL_BASE_IMAGE) ;;
    CODEINTEL_* | COMPOSE_*) unset "$v" ;;
  esac
done

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)
scratch=$(mktemp -d -t codeintel-deploy.XXXXXX)
compose=()
ok=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ ${#compose[@]} -gt 0 ]; then
    if [ $ok != 1 ]; then
      echo "--- FAILED; container state and last log lines:"
      "${compose[@]}" ps -a 2>&1 || true
      "${compose[@]}" logs --no-color --tail 30 2>&1 | tail -n 150 || true
    fi
    timeout 120 "${compose[@]}" down -v --remove-orphans --timeout 20 >"$scratch/down.log" 2>&1 ||
      { echo "docker compose down failed:"; cat "$scratch/down.log"; }
  fi
  docker_down
  rm -rf "$scratch"
  if [ $ok = 1 ]; then
    echo "== timings: base image ${t_base}s, image build ${t_image}s, compose cold start to first cited Answer ${t_first}s, total wall $(secs "$t_start" "$(now)")s"
    echo "PASS: deployment test"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

for p in $ports; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "127.0.0.1:$p is in use (deploy/compose.test.yml needs $ports)"
  fi
done
[ -x "$bin/codeintel" ] || fail "$bin/codeintel is missing: build the release binaries first (make build)"
docker compose version >/dev/null 2>&1 || fail "docker compose is not installed: make docker-deps"
docker_up

echo "== image"
t=$(now)
base=${CODEINTEL_BASE_IMAGE:-codeintel-base:bookworm}
case $base in
  codeintel-base:*)
    CODEINTEL_BASE_IMAGE=$base "$here/image-base.sh" >"$scratch/base.log" 2>&1 ||
      { tail -n 30 "$scratch/base.log"; fail "base image"; }
    ;;
esac
t_base=$(secs "$t" "$(now)")
t=$(now)
CODEINTEL_REDIS_IMAGE=$redis_image "$here/image.sh" "$bin" >"$scratch/image.log" 2>&1 ||
  { tail -n 30 "$scratch/image.log"; fail "image build"; }
t_image=$(secs "$t" "$(now)")
grep -E '^staged|^(codeintel|codeintel-redis) ' "$scratch/image.log" | sed 's/^/  /'
echo "  base image ${t_base}s ($(grep -m1 -oE 'already there|debootstrap|importing' "$scratch/base.log" || echo "$base")), image build ${t_image}s"

# The fixture, copied so that the container's uid can read it whatever the checkout's umask.
mkdir -p "$scratch/repos"
cp -r "$root/tests/e2e/fixtures/shop" "$scratch/repos/shop"
chmod -R a+rX "$scratch/repos"
cat >"$scratch/test.env" <<EOF
CODEINTEL_IMAGE=$image
CODEINTEL_REDIS_IMAGE=$redis_image
CODEINTEL_REPOS=$scratch/repos
EOF
compose=(docker compose --project-directory "$root" --env-file "$scratch/test.env"
  -f "$root/docker-compose.yml" -f "$root/deploy/compose.test.yml")
# Until the image's codeintel has the `health` subcommand, the healthchecks ask /ready instead
# (503 when down, as health is NOT_SERVING only when down), through bash's /dev/tcp.
if ! docker run --rm --network none "$image" codeintel health --help >/dev/null 2>&1; then
  echo "  NOTE: this codeintel has no 'health' subcommand yet; healthchecks use GET /ready instead"
  {
    echo "services:"
    for s in answer-svc:55101 vector-svc:55102 lexical-svc:55103 hydrate-svc:55104; do
      echo "  ${s%:*}:"
      echo "    healthcheck:"
      echo "      test: [\"CMD\", \"bash\", \"-c\", \"exec 3<>/dev/tcp/127.0.0.1/${s#*:} && printf 'GET /ready HTTP/1.0\\\\r\\\\n\\\\r\\\\n' >&3 && head -n 1 <&3 | grep -q ' 200'\"]"
    done
  } >"$scratch/health-ready.yml"
  compose+=(-f "$scratch/health-ready.yml")
fi
"${compose[@]}" config -q || fail "docker compose config"
# The default file with every profile, as is and as each profile's env file sets it.
for e in "" deploy/gpu.env deploy/cpu-models.env; do
  docker compose --project-directory "$root" ${e:+--env-file "$root/$e"} -f "$root/docker-compose.yml" \
    --profile index --profile cpu-models --profile gpu config -q || fail "docker compose config ${e:-(defaults)}"
done
timeout 120 "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true # leftovers of an interrupted run

echo "== compose up"
t_up=$(now)
timeout 300 "${compose[@]}" up -d --wait --wait-timeout 240 >"$scratch/up.log" 2>&1 ||
  { cat "$scratch/up.log"; fail "docker compose up"; }
t_healthy=$(secs "$t_up" "$(now)")
echo "  healthy after ${t_healthy}s: $("${compose[@]}" ps --format '{{.Service}}={{.Health}}' | sort | tr '\n' ' ')"
if ip -4 -o addr show 2>/dev/null | grep -qE ' (docker0|br-)'; then
  fail "a container bridge exists; the test must stay on the host network"
fi

echo "== index"
t=$(now)
timeout 600 "${compose[@]}" run --rm -T index /repos/shop --repo shop --quiet >"$scratch/index.log" 2>&1 ||
  { cat "$scratch/index.log"; fail "codeintel index in the index container"; }
t_index=$(secs "$t" "$(now)")
grep '^indexed' "$scratch/index.log" | sed 's/^/  /'
echo "  index ${t_index}s"

# ask OUT ERR: one streamed Answer from the host's codeintel.
ask() {
  timeout 60 "$bin/codeintel" ask --set "answer.addr=$answer" --top-k 5 --time-budget-ms 10000 "$question" >"$1" 2>"$2"
}
cited() { grep -qE '^  \[[0-9]+\] shop/[^ :]+:[0-9]+-[0-9]+' "$1"; }
limits() { grep -oE '^note \[[a-z_]+\]' "$1" | sed 's/note \[\(.*\)\]/\1/' | sort -u | tr '\n' ' '; }
show() { # OUT ERR
  sed -n '/^Sources:/,$p' "$1" | sed 's/^/  /'
  echo "  limits: $(limits "$2")"
}
# until_ok SECONDS CHECK: asks every second until CHECK OUT ERR succeeds.
until_ok() {
  local deadline=$(($(date +%s) + $1)) check=$2
  while :; do
    if ask "$scratch/out" "$scratch/err" && $check "$scratch/out" "$scratch/err"; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 1
  done
}
full() { cited "$1" && ! grep -q '^note \[dense_' "$2"; }
degraded() { cited "$1" && grep -q '^note \[dense_' "$2"; }

echo "== answer"
# The services pick the new version up within reload_ms (2 s).
until_ok 90 full || { cat "$scratch/out" "$scratch/err"; fail "no cited Answer without dense limits within 90 s of indexing"; }
t_first=$(secs "$t_up" "$(now)")
show "$scratch/out" "$scratch/err"
echo "  compose cold start to first cited Answer ${t_first}s (healthy ${t_healthy}s, index ${t_index}s)"

echo "== vector-svc stopped"
timeout 60 "${compose[@]}" stop vector-svc >/dev/null 2>&1 || fail "docker compose stop vector-svc"
until_ok 30 degraded || { cat "$scratch/out" "$scratch/err"; fail "no cited Answer with a dense_* limit while vector-svc is stopped"; }
show "$scratch/out" "$scratch/err"

echo "== vector-svc started again"
t=$(now)
timeout 60 "${compose[@]}" start vector-svc >/dev/null 2>&1 || fail "docker compose start vector-svc"
until_ok 90 full || { cat "$scratch/out" "$scratch/err"; fail "Answers still degraded 90 s after vector-svc was started again"; }
show "$scratch/out" "$scratch/err"
echo "  recovered $(secs "$t" "$(now)")s after the start"
ok=1
