#!/usr/bin/env bash
# Parley's relay measured exactly as its peers, with Mosquitto and NATS measured again in the same run (Prosody too
# with --with-prosody): W1 fan-out, W2 latency (also with 100 logins at once), W3 idle connections, and two relays on
# one PostgreSQL database. Each measurement is 3 repetitions on fresh servers; one JSON line each in OUT.
#   run_relay.sh PARLEY_BINARY [--quick] [--with-prosody] [--out OUT]
# scripts/bench relay builds the release binary and calls this. --quick: one repetition each (a smoke run).
set -euo pipefail
cd "$(dirname "$0")"
parley=${1:?usage: run_relay.sh PARLEY_BINARY [--quick] [--with-prosody] [--out OUT]}
shift
reps=3
prosody=false
out=results/relay-$(date +%Y%m%d-%H%M%S).jsonl
while [ $# -gt 0 ]; do
  case $1 in
    --quick) reps=1 ;;
    --with-prosody) prosody=true ;;
    --out) out=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# The peers and the harness's Python packages; services do not start on their own here.
need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v nats-server >/dev/null || need+=(nats-server)
$prosody && ! command -v prosody >/dev/null && need+=(prosody lua-event)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import websockets, hdrh, nats, paho.mqtt, cryptography' 2>/dev/null \
  || pip install -q websockets hdrhistogram nats-py paho-mqtt cryptography
$prosody && { python3 -c 'import slixmpp' 2>/dev/null || pip install -q slixmpp; }

# PostgreSQL for the two-relay measurement, stopped and removed however this script ends.
eval "$(../../scripts/postgres-test-server)"
pg_dir=$(dirname "$PARLEY_TEST_POSTGRES_CTL")
trap '"$PARLEY_TEST_POSTGRES_CTL" stop >/dev/null 2>&1 || kill "$PARLEY_TEST_POSTGRES_PID" 2>/dev/null; rm -rf "$pg_dir"' EXIT

version=$("$parley" --version)
P=(python3 harness.py run --peer parley --reps "$reps" --out "$out" --opt "parley=$parley" --opt "version=parley $version")
M=(python3 harness.py run --peer mqtt --reps "$reps" --out "$out")
N=(python3 harness.py run --peer nats --reps "$reps" --out "$out")
start=$(date +%s)
for m in raw lib; do
  "${P[@]}" --workload w1 --subs 100 --seconds 10 --sub-mode $m --window 100000 | tail -1
  "${M[@]}" --workload w1 --subs 100 --seconds 10 --sub-mode $m --window 100000 | tail -1
done
"${P[@]}" --workload w1 --subs 1000 --seconds 10 --sub-mode raw --window 100000 --reps 1 | tail -1  # 2,002 password hashes to set up
"${N[@]}" --workload w1 --subs 100 --seconds 10 --sub-mode raw --window 500000 | tail -1
"${P[@]}" --workload w2 --subs 100 --rate 200 --seconds 30 --sub-mode raw | tail -1
"${M[@]}" --workload w2 --subs 100 --rate 200 --seconds 30 --sub-mode raw | tail -1
"${N[@]}" --workload w2 --subs 100 --rate 200 --seconds 30 --sub-mode raw | tail -1
"${P[@]}" --workload w2 --subs 100 --rate 200 --seconds 30 --sub-mode raw --logins 100 --label logins | tail -1
"${P[@]}" --workload w2 --subs 10 --rate 1000 --seconds 30 --sub-mode raw --label two-relays \
  --opt "database=$PARLEY_TEST_POSTGRES_URL" --opt relays=2 | tail -1
"${P[@]}" --workload w2 --subs 10 --rate 1000 --seconds 30 --sub-mode raw --label one-relay-postgres \
  --opt "database=$PARLEY_TEST_POSTGRES_URL" | tail -1
"${P[@]}" --workload w3 --conns 10000 --seconds 5 | tail -1
"${M[@]}" --workload w3 --conns 10000 --seconds 5 | tail -1
if $prosody; then
  X=(python3 harness.py run --peer xmpp --reps "$reps" --out "$out")
  "${X[@]}" --workload w1 --subs 100 --seconds 10 --sub-mode raw --window 50000 | tail -1
  "${X[@]}" --workload w2 --subs 100 --rate 200 --seconds 30 --sub-mode raw | tail -1
fi
echo "relay suite took $(( $(date +%s) - start )) s; results in $(pwd)/$out"
python3 report.py "$out"
