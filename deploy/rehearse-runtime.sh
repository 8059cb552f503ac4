#!/usr/bin/env bash
# Rehearses the Dockerfile's runtime stage without a container engine: the
# production dependencies alone (npm ci --omit=dev), the compiled server and
# config, NODE_ENV=production, the image's CMD, then its HEALTHCHECK command,
# then SIGTERM. Prints "rehearsal passed" or says what failed; exits non-zero
# on failure. Run from the repository root after `npm run build`.
set -uo pipefail
root=$(pwd)
app=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; rm -rf "$app"' EXIT

fail() {
  echo "rehearsal failed: $*" >&2
  [ -f "$app/server.log" ] && tail -n 20 "$app/server.log" >&2
  exit 1
}

# The image's CMD (the last, at the start of a line) and its HEALTHCHECK's (the continuation line), both exec form.
cmd=$(sed -nE 's/^CMD (\[.*\])\s*$/\1/p' "$root/Dockerfile" | tail -n 1)
healthcheck=$(sed -nE 's/^\s+CMD (\[.*\])\s*$/\1/p' "$root/Dockerfile" | head -n 1)
[ -n "$cmd" ] || fail "no exec-form CMD in the Dockerfile"
[ -n "$healthcheck" ] || fail "no exec-form HEALTHCHECK CMD in the Dockerfile"

cp "$root/package.json" "$root/package-lock.json" "$app/" || fail "cannot copy the package files"
(cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null 2>&1) || fail "npm ci --omit=dev --ignore-scripts"
cp -r "$root/dist" "$root/config" "$app/" || fail "no dist/: run npm run build first"

# A free loopback port, and a Deskie URL nothing answers on: /healthz needs no Deskie.
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
mapfile -t argv < <(node -e "for (const a of JSON.parse(process.argv[1])) console.log(a)" "$cmd")
(cd "$app" && exec env -i PATH="$PATH" HOME="$app" NODE_ENV=production PORT="$port" HOST=127.0.0.1 \
  DESKIE_URL=http://127.0.0.1:9 CACHE_KEY_SECRET=rehearsal-secret-0123 SHUTDOWN_DRAIN_SECONDS=0 "${argv[@]}" >"$app/server.log" 2>&1) &
server=$!

mapfile -t check < <(node -e "for (const a of JSON.parse(process.argv[1])) console.log(a)" "$healthcheck")
healthy=no
for _ in $(seq 1 100); do
  if ! kill -0 "$server" 2>/dev/null; then fail "the server exited at start"; fi
  if (cd "$app" && PORT="$port" "${check[@]}" >/dev/null 2>&1); then healthy=yes; break; fi
  sleep 0.1
done
[ "$healthy" = yes ] || fail "the HEALTHCHECK command never succeeded"
grep -q '"msg":"deskie-stats-proxy ready"' "$app/server.log" || fail "no ready line in the log"
grep -qi 'simulat' "$app/server.log" && fail "a production start mentions the simulator"

kill -TERM "$server"
for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server" 2>/dev/null && fail "the server did not stop within 10 s of SIGTERM"
wait "$server"
code=$?
[ "$code" -eq 0 ] || fail "the server exited with $code after SIGTERM"
echo "rehearsal passed: npm ci --omit=dev, NODE_ENV=production, CMD ${cmd}, HEALTHCHECK, SIGTERM"
