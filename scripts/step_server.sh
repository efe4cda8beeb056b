# Sourced by the *_step.sh scripts: starts `chex bench "$@"` (output in $OUT.log), finds its demo
# server, and returns a second after the server has received its first Slack event. Sets `bench`
# (the bench's pid), `server` (the server's pid) and `port`; defines `metric NAME` (the sum of a
# metric's samples on the server's /metrics).
CHEX="${CHEX:-${CARGO_TARGET_DIR:-/root/.cache/chex-release}/release/chex}"
ulimit -n 20000
"$CHEX" bench "$@" > "$OUT.log" 2>&1 &
bench=$!
port=""
while [ -z "$port" ]; do
  sleep 0.5
  kill -0 "$bench" 2>/dev/null || { echo "the bench ended before its server was up: see $OUT.log" >&2; exit 1; }
  server=$(pgrep -f "$CHEX demo" | head -1 || true)
  # The demo listens on several ports (its simulators too): the server is the one with /metrics.
  for p in $( [ -n "$server" ] && ss -ltnp | grep "pid=$server," | grep -o '127.0.0.1:[0-9]*' ); do
    curl -s "http://$p/metrics" | grep -q '^chex_' && { port=$p; break; }
  done
done
echo "server pid $server at $port" >&2
metric() { curl -s "http://$port/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }
until [ "$(metric chex_slack_events_received_total)" -gt 0 ]; do
  kill -0 "$bench" 2>/dev/null || { echo "the bench ended before a step started" >&2; exit 1; }
  sleep 0.2
done
sleep 1
