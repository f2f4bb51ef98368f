#!/usr/bin/env bash
# A real rollout, end to end, on this machine's Docker engine:
#   builds deployctl, the sample app (FROM scratch, two versions) and
#   Traefik v3.0.0 from Go modules; starts Traefik on 127.0.0.1 with the
#   docker provider; deploys v1; then rolls v1 -> v2 with deployctl while
#   HTTP load flows through Traefik, and prints how many requests failed.
# Everything it creates is removed on exit. Needs: Go, a Docker engine.
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
NET=deployctl-demo
IMAGE=deployctl-demo-app
CACHE=${DEPLOYCTL_TRAEFIK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deployctl-test}
work=$(mktemp -d)
traefik_pid=""

cleanup() {
  set +e
  [ -n "$traefik_pid" ] && kill "$traefik_pid" 2>/dev/null && wait "$traefik_pid" 2>/dev/null
  ids=$(docker ps -aq --filter label=deployctl.app=demo)
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  vols=$(docker volume ls -q --filter label=deployctl.history=demo)
  [ -n "$vols" ] && docker volume rm $vols >/dev/null
  docker rm -f deployctl-lock-demo >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1
  docker rmi "$IMAGE:v1" "$IMAGE:v2" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

docker info >/dev/null 2>&1 || { echo "demo: no Docker engine answers (docker info failed)" >&2; exit 1; }

say "building deployctl (static) and the sample app"
CGO_ENABLED=0 go build -o "$work/deployctl" .
mkdir -p "$work/image"
CGO_ENABLED=0 go build -o "$work/image/app" ./testdata/app

traefik="$CACHE/demo-traefik-$TRAEFIK_VERSION"
if [ ! -x "$traefik" ]; then
  say "building Traefik $TRAEFIK_VERSION from Go modules (once; a few minutes on 2 cores)"
  mkdir -p "$CACHE"
  (cd "testdata/traefik/$TRAEFIK_VERSION" && CGO_ENABLED=0 go build -ldflags '-s -w' -o "$traefik.tmp" github.com/traefik/traefik/v3/cmd/traefik)
  mv "$traefik.tmp" "$traefik"
fi

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
docker network create "$NET" >/dev/null
mkdir -p "$work/traefik-home"
(cd "$work/traefik-home" && HOME="$work/traefik-home" exec "$traefik" \
  --global.checknewversion=false --global.sendanonymoususage=false \
  --entrypoints.web.address=127.0.0.1:$WEB_PORT --entrypoints.traefik.address=127.0.0.1:$API_PORT \
  --api.insecure=true --api.dashboard=false \
  --providers.docker=true --providers.docker.exposedbydefault=false \
  --providers.docker.network=$NET --providers.docker.constraints="Label(\`deployctl.app\`,\`demo\`)" \
  >"$work/traefik.log" 2>&1) &
traefik_pid=$!
export DEPLOYCTL_TRAEFIK_URL=http://127.0.0.1:$API_PORT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$API_PORT) 2>/dev/null && break
  kill -0 "$traefik_pid" 2>/dev/null || { echo "demo: Traefik exited:" >&2; cat "$work/traefik.log" >&2; exit 1; }
  sleep 0.1
done

say "first deploy: v1 (configuration from flags)"
"$work/deployctl" rollout --app demo --image "$IMAGE" --version v1 --network "$NET" \
  --label traefik.enable=true \
  --label 'traefik.http.routers.demo.rule=Host(`demo.localhost`)' \
  --label traefik.http.services.demo.loadbalancer.server.port=8080

say "rolling v1 -> v2 under $RATE req/s through Traefik"
go build -o "$work/load" ./testdata/load
"$work/load" -url "http://127.0.0.1:$WEB_PORT/" -host demo.localhost -rate "$RATE" >"$work/load.out" &
load_pid=$!
sleep 1
"$work/deployctl" rollout --app demo --image "$IMAGE" --version v2
sleep 1
kill -INT "$load_pid"
load_status=0
wait "$load_pid" || load_status=$?

say "result"
cat "$work/load.out"
docker ps -a --filter label=deployctl.app=demo --format 'table {{.Names}}\t{{.Label "deployctl.version"}}\t{{.Status}}'
exit "$load_status"
