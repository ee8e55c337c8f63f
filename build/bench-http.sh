#!/usr/bin/env bash
# HTTP authorize throughput through the real fasthttp server on loopback, measured with wrk.
# Workload: embedded SQLite file in WAL mode, 1,000 agents with 5 permissions each, every
# decision durably audited; wrk -t2 -c32 -d10s on POST /agents/{id}/authorize, each request
# with the agent's own token, cycling over all agents, half of them allowed and half denied.
# Prints req/s, the server's RSS, and the CPU time the server and wrk used per request.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing it from Debian's packages" >&2
  apt-get install -y wrk >/dev/null
fi
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/kavach" ./cmd/kavach
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GOMAXPROCS=${GOMAXPROCS:-2} "$work/kavach" serve -db-url "$work/bench.db" -addr "127.0.0.1:$port" -max-agents-per-user -1 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
key=$(grep -o 'kvk_[A-Za-z0-9_-]*' "$work/out" | head -1)
python3 - "$port" "$key" "$work/agents.lua" <<'PY'
import json, sys, urllib.request
port, key, out = sys.argv[1], sys.argv[2], sys.argv[3]
perms = [{"resource": "mcp:slack:*", "actions": ["read", "write"]}, {"resource": "mcp:jira:issues", "actions": ["read"]},
         {"resource": "db:analytics:*:read", "actions": ["query"]}, {"resource": "fs:tmp:*", "actions": ["read", "write", "delete"]},
         {"resource": "mcp:github:*", "actions": ["read"]}]
rows = []
for i in range(1000):
    body = json.dumps({"ownerId": f"owner_{i % 100}", "name": f"agent-{i}", "type": "autonomous", "permissions": perms}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/agents", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    a = json.load(urllib.request.urlopen(req))
    rows.append('{"%s","%s"}' % (a["id"], a["token"]))
with open(out, "w") as f:
    f.write("agents = {" + ",".join(rows) + "}\n")
PY
# The requests are formatted once, so that wrk, which shares the machine, spends its time
# sending them rather than building them.
cat >>"$work/agents.lua" <<'LUA'
local reqs = {}
init = function(args) -- after wrk has set its Host header
  for n, a in ipairs(agents) do
    local body = (n % 2 == 0) and '{"action":"read","resource":"mcp:github:repos"}' or '{"action":"write","resource":"mcp:github:repos"}'
    reqs[n] = wrk.format("POST", "/agents/" .. a[1] .. "/authorize", {["Authorization"] = "Bearer " .. a[2], ["Content-Type"] = "application/json"}, body)
  end
end
local i = 0
request = function()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
LUA
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system CPU time, in 1/100 s
cpu0=$(ticks "$pid")
TIMEFORMAT='%U %S'
{ time wrk -t2 -c32 -d"$DURATION" -s "$work/agents.lua" "http://127.0.0.1:$port" >"$work/wrk"; } 2>"$work/wrk-cpu"
cpu1=$(ticks "$pid")
cat "$work/wrk"
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
rows=$(python3 -c "import sqlite3; print(sqlite3.connect('$work/bench.db').execute('select count(*) from kavach_audit_logs').fetchone()[0])" 2>/dev/null || echo "?")
reqs=$(awk '/requests in/ {print $1}' "$work/wrk")
if grep -q "Non-2xx" "$work/wrk"; then echo "bench-http: some requests failed" >&2; exit 1; fi
echo "HTTP authorize: $(awk '/Requests\/sec/ {print $2}' "$work/wrk") req/s; server RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB); audit rows written: $rows"
awk -v s="$(( (cpu1 - cpu0) * 10000 ))" -v n="$reqs" -v w="$(cat "$work/wrk-cpu")" 'BEGIN {
  split(w, t, " "); printf "CPU per request: server %.1f µs, wrk %.1f µs\n", s / n, (t[1] + t[2]) * 1e6 / n }'
