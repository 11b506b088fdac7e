#!/usr/bin/env bash
# Sigma's online time over emulated networks: the server and the client run in two network namespaces joined by a
# veth pair; the dealer runs outside (its keys are files). Touches no existing interface, and removes its
# namespaces (with the veth pair inside them) and processes on exit, also on failure or Ctrl-C. Needs root.
#
#   scripts/netns-bench.sh [--models "gpt2 bert-base"] [--profiles "lan wan"] [--seq 128] [--json FILE]
#
# Profiles (the reference's, SIGMA §6): lan = 1 Gbit/s and 0.5 ms round trip; wan = 305 Mbit/s and 60 ms.
# Bandwidth: tbf on both ends of the veth pair. Latency: this kernel has no netem (CONFIG_NET_SCH_NETEM is off), so
# `sigma relay` in the server's namespace holds every byte for half the round trip in each direction (see
# DelayRelay for what that does and does not model).
set -euo pipefail
cd "$(dirname "$0")/.."
models="gpt2 bert-base"
profiles="lan wan"
seq=128
json=""
while [ $# -gt 0 ]; do
    case "$1" in
    --models) models=$2; shift 2 ;;
    --profiles) profiles=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "netns-bench needs root (network namespaces)" >&2; exit 2; }
swift build -c release >/dev/null
sigma=$PWD/.build/release/sigma
work=$(mktemp -d /tmp/sigma-netns.XXXXXX)
server_ns=sigma-bench-server
client_ns=sigma-bench-client
pids=()

cleanup() {
    for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    ip netns del "$server_ns" 2>/dev/null || true
    ip netns del "$client_ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$server_ns"
ip netns add "$client_ns"
ip link add sigma-s0 netns "$server_ns" type veth peer name sigma-c0 netns "$client_ns"
ip -n "$server_ns" addr add 10.77.0.1/24 dev sigma-s0
ip -n "$client_ns" addr add 10.77.0.2/24 dev sigma-c0
for ns in "$server_ns" "$client_ns"; do
    ip -n "$ns" link set lo up
done
ip -n "$server_ns" link set sigma-s0 up
ip -n "$client_ns" link set sigma-c0 up

"$sigma" credentials --out "$work/credentials" >/dev/null
results=()
for profile in $profiles; do
    case $profile in
    lan) rate=1gbit; burst=1mb; one_way_ms=0.25 ;;
    wan) rate=305mbit; burst=512kb; one_way_ms=30 ;;
    *) echo "unknown profile $profile" >&2; exit 2 ;;
    esac
    for side in "$server_ns sigma-s0" "$client_ns sigma-c0"; do
        set -- $side
        tc -n "$1" qdisc replace dev "$2" root tbf rate "$rate" burst "$burst" latency 200ms
    done
    for model in $models; do
        ids=$(seq 1 "$seq" | paste -sd, -)
        # The widths the model's range certificate proves for its activation and softmax inputs (public).
        read -r -a widths <<<"$("$sigma" check-ranges --model "$model" | grep -oE -- '--(activation|softmax)-bits [0-9]+' | tr '\n' ' ')"
        job=(--model "$model" --tokens "$seq" "${widths[@]}")
        keys=$work/keys-$model-$profile
        echo "== $model, $profile ($rate, $(printf '%g' "$(echo "$one_way_ms * 2" | bc)") ms round trip): keys" >&2
        "$sigma" dealer --keys "$keys" --credentials "$work/credentials/dealer.cred" "${job[@]}" 2>"$work/dealer.log"
        ip netns exec "$server_ns" "$sigma" server --keys "$keys/server.key" --credentials \
            "$work/credentials/server.cred" --host 127.0.0.1 --port 7000 --timeout 900 "${job[@]}" \
            2>"$work/server.log" &
        pids+=($!)
        ip netns exec "$server_ns" "$sigma" relay --listen 10.77.0.1:7001 --to 127.0.0.1:7000 \
            --delay-ms "$one_way_ms" 2>"$work/relay.log" &
        relay=$!
        pids+=($relay)
        sleep 1
        echo "== $model, $profile: online" >&2
        ip netns exec "$client_ns" "$sigma" client --keys "$keys/client.key" --credentials \
            "$work/credentials/client.cred" --connect 10.77.0.1:7001 --timeout 900 --ids "$ids" --json "${job[@]}" \
            >"$work/client.json"
        wait "${pids[-2]}"
        kill "$relay" 2>/dev/null || true
        wait "$relay" 2>/dev/null || true
        rm -rf "$keys"
        # The first occurrence of each field is the top-level one (the per-part breakdown follows it).
        field() { grep -oE "\"$1\":[0-9.e+-]+" "$work/client.json" | head -n 1 | cut -d: -f2; }
        online=$(field online_seconds)
        rounds=$(field rounds)
        sent=$(field bytes_sent)
        received=$(field bytes_received)
        printf '%-10s %-4s online %8.2f s  rounds %5d  client sent %6.1f MB, received %7.1f MB\n' \
            "$model" "$profile" "$online" "$rounds" "$(echo "$sent / 1000000" | bc -l)" \
            "$(echo "$received / 1000000" | bc -l)"
        results+=("{\"model\":\"$model\",\"profile\":\"$profile\",\"rate\":\"$rate\",\"round_trip_ms\":$(printf '%g' "$(echo "$one_way_ms * 2" | bc)"),\"online_seconds\":$online,\"rounds\":$rounds,\"client_sent\":$sent,\"client_received\":$received}")
    done
done
if [ -n "$json" ]; then
    (IFS=,; echo "[${results[*]}]") >"$json"
fi
