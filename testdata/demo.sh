#!/usr/bin/env bash
# A real rollout, end to end, on this machine's Docker engine:
#   builds deployctl and the sample app (FROM scratch, two versions), takes
#   Traefik v3.0.0 from the tests' cache (internal/harness.TraefikBinary,
#   built from Go modules the first time); starts Traefik on 127.0.0.1 with
#   the docker provider; deploys v1; then rolls v1 -> v2 with deployctl
#   while HTTP load flows through Traefik, and prints how many requests
#   failed. The app, network and images are named deployctl-demo-<pid>-<random>;
#   only they are removed on exit. The engine is the one DOCKER_HOST names
#   (for Traefik too), else the local socket. Needs: Go, a Docker engine.
#
#   ./testdata/demo.sh            # env: DEMO_RATE (req/s, default 100)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

TRAEFIK_VERSION=v3.0.0
RATE=${DEMO_RATE:-100}
# A port nothing listens on (the demo only listens on 127.0.0.1).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
}
WEB_PORT=${DEMO_WEB_PORT:-$(free_port)}
API_PORT=${DEMO_API_PORT:-$(free_port)}
# Names no one else uses: the app, its network and its image repository
# carry this run's id, and the cleanup removes only what carries it (a
# user's own app named "demo" is not touched, nor a second demo running).
ID=$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
APP=deployctl-demo-$ID
NET=$APP
IMAGE=$APP-app
work=$(mktemp -d)
traefik_pid=""
net_id=""

cleanup() {
  set +e
  [ -n "$traefik_pid" ] && kill "$traefik_pid" 2>/dev/null && wait "$traefik_pid" 2>/dev/null
  ids=$(docker ps -aq --filter "label=deployctl.app=$APP")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  docker rm -f "deployctl-lock-$APP" >/dev/null 2>&1
  vols=$(docker volume ls -q --filter "label=deployctl.history=$APP")
  [ -n "$vols" ] && docker volume rm $vols >/dev/null
  [ -n "$net_id" ] && docker network rm "$net_id" >/dev/null
  docker rmi "$IMAGE:v1" "$IMAGE:v2" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# Everything below talks to the engine DOCKER_HOST names (the docker CLI,
# deployctl and Traefik alike), else the local socket.
docker info >/dev/null 2>&1 || { echo "demo: no Docker engine answers at ${DOCKER_HOST:-the default socket} (docker info failed)" >&2; exit 1; }

say "building deployctl (static) and the sample app"
CGO_ENABLED=0 go build -o "$work/deployctl" .
mkdir -p "$work/image"
CGO_ENABLED=0 go build -o "$work/image/app" ./testdata/app

say "Traefik $TRAEFIK_VERSION from the tests' cache (built from Go modules the first time: many minutes on 2 cores)"
traefik=$(go run ./internal/cmd/traefikbin "$TRAEFIK_VERSION")

say "building images $IMAGE:v1 and $IMAGE:v2 (FROM scratch, HEALTHCHECK in the image)"
for v in v1 v2; do
  cat >"$work/image/Dockerfile" <<EOF
FROM scratch
COPY app /app
ENV APP_VERSION=$v DRAIN=2s
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=2s --retries=3 CMD ["/app", "probe"]
ENTRYPOINT ["/app"]
EOF
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE:$v" "$work/image" >/dev/null 2>&1 ||
    docker build -q -t "$IMAGE:$v" "$work/image" >/dev/null
done

say "starting Traefik $TRAEFIK_VERSION: entrypoint 127.0.0.1:$WEB_PORT, API 127.0.0.1:$API_PORT"
net_id=$(docker network create --label "deployctl.demo=$APP" "$NET")
endpoint=()
[ -n "${DOCKER_HOST:-}" ] && endpoint=(--providers.docker.endpoint="$DOCKER_HOST")
mkdir -p "$work/traefik-home"
(cd "$work/traefik-home" && HOME="$work/traefik-home" exec "$traefik" \
  --global.checknewversion=false --global.sendanonymoususage=false \
  --entrypoints.web.address=127.0.0.1:$WEB_PORT --entrypoints.traefik.address=127.0.0.1:$API_PORT \
  --api.insecure=true --api.dashboard=false \
  --providers.docker=true --providers.docker.exposedbydefault=false ${endpoint[@]+"${endpoint[@]}"} \
  --providers.docker.network="$NET" --providers.docker.constraints="Label(\`deployctl.app\`,\`$APP\`)" \
  >"$work/traefik.log" 2>&1) &
traefik_pid=$!
export DEPLOYCTL_TRAEFIK_URL=http://127.0.0.1:$API_PORT
# Until the API answers 200: Traefik accepts connections on its port a
# moment before it serves the API there (404 until then).
api_ready() {
  (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT" &&
    printf 'GET /api/http/services HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
    head -1 <&3 | grep -q ' 200 ') 2>/dev/null
}
for i in $(seq 1 300); do
  api_ready && break
  kill -0 "$traefik_pid" 2>/dev/null || { echo "demo: Traefik exited:" >&2; cat "$work/traefik.log" >&2; exit 1; }
  [ "$i" = 300 ] && { echo "demo: Traefik's API did not answer within 30s:" >&2; tail -20 "$work/traefik.log" >&2; exit 1; }
  sleep 0.1
done

say "first deploy: v1 (configuration from flags)"
"$work/deployctl" rollout --app "$APP" --image "$IMAGE" --version v1 --network "$NET" \
  --label traefik.enable=true \
  --label 'traefik.http.routers.demo.rule=Host(`demo.localhost`)' \
  --label traefik.http.services.demo.loadbalancer.server.port=8080

say "rolling v1 -> v2 under $RATE req/s through Traefik"
go build -o "$work/load" ./testdata/load
"$work/load" -url "http://127.0.0.1:$WEB_PORT/" -host demo.localhost -rate "$RATE" >"$work/load.out" &
load_pid=$!
sleep 1
"$work/deployctl" rollout --app "$APP" --image "$IMAGE" --version v2
sleep 1
kill -INT "$load_pid"
load_status=0
wait "$load_pid" || load_status=$?

say "result"
cat "$work/load.out"
docker ps -a --filter "label=deployctl.app=$APP" --format 'table {{.Names}}\t{{.Label "deployctl.version"}}\t{{.Status}}'
exit "$load_status"
