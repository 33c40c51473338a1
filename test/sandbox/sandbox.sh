#!/usr/bin/env bash
# sandbox.sh BIN_DIR - `make run`: the real agent on a namespace LAN of its own.
# sandbox.sh --clean - `make run-clean`: remove what an interrupted run left.
#
# The LAN has the shape of test/netlab's: a bridge, a node (where the agent
# runs, so the sysctl-tuner tunes only the node's namespace), a gateway owning
# 10.0.0.1 and fd00::1, and a neighbour owning 10.0.0.10 and fd00::10. The
# agent and its plugins are copied into a root-owned directory under /run (the
# agent refuses plugins that other users could swap). Nothing outside these
# namespaces and that directory is changed; Ctrl-C removes everything.
#
# SANDBOX_DEMO=1 runs the demo checks, prints them and exits (the tests use
# it) instead of waiting for Ctrl-C.
set -euo pipefail

# SANDBOX_PREFIX names the namespaces and the state directory; tests set
# their own so that they never meet a sandbox someone is using.
prefix=${SANDBOX_PREFIX:-spa-run}
state=/run/$prefix
br=$prefix-br node=$prefix-node gw=$prefix-gw nb=$prefix-nb

clean() {
	if [ -f "$state/agent.pid" ]; then
		pid=$(cat "$state/agent.pid")
		# Ask politely, then insist: the plugins die with the agent.
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	for ns in $nb $gw $node $br; do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$state"
}

if [ "${1:-}" = "--clean" ]; then
	clean
	echo "sandbox $prefix removed"
	exit 0
fi

bin=${1:?usage: sandbox.sh BIN_DIR | --clean}
if [ "$(id -u)" -ne 0 ]; then
	echo "make run needs root: it builds network namespaces and the agent opens packet sockets (sudo make run)" >&2
	exit 1
fi
for f in "$bin/spiderpool-agent" "$bin/plugins"; do
	[ -e "$f" ] || { echo "missing $f: run make build first" >&2; exit 1; }
done
if ip netns list | grep -q "^$node\b"; then
	echo "a sandbox is already running (or was interrupted): make run-clean removes it" >&2
	exit 1
fi

trap clean EXIT
trap 'exit 130' INT TERM

umask 022
mkdir -p "$state"
chmod 0755 "$state"
cp -r "$bin/spiderpool-agent" "$bin/plugins" "$state/"
agent=$state/spiderpool-agent
sock=$state/spiderpool.sock

ip netns add $br
ip -n $br link add br0 type bridge mcast_snooping 0 stp_state 0
ip -n $br link set br0 up
addhost() { # ns mac addr...
	local ns=$1 mac=$2
	shift 2
	ip netns add "$ns"
	ip netns exec "$ns" sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad'
	ip -n $br link add "p-${ns#"$prefix"-}" type veth peer name eth0 netns "$ns"
	ip -n $br link set "p-${ns#"$prefix"-}" master br0 up
	ip -n "$ns" link set eth0 address "$mac"
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
	for a in "$@"; do
		case $a in
		*:*) ip -n "$ns" addr add "$a" dev eth0 nodad ;;
		*) ip -n "$ns" addr add "$a" dev eth0 ;;
		esac
	done
}
addhost $node 02:00:00:00:00:01
addhost $gw 02:00:00:00:00:fe 10.0.0.1/24 fd00::1/64
addhost $nb 02:00:00:00:00:10 10.0.0.10/24 fd00::10/64

cat >"$state/agent.hcl" <<EOF
# The sandbox's agent: the built-ins from $state/plugins, metrics on, gops off.
plugin_dir  = "$state/plugins"
socket_path = "$sock"
gops_port   = 0
metrics {
  enabled = true
  address = "127.0.0.1"
}
ipam {
  db_path = "$state/ipam.db"
}
EOF
# A demo pool per family; the neighbour owns 10.0.0.10 and fd00::10, inside
# the ranges, so an allocation may meet it and skip it.
mkdir -p "$state/ipam.d"
cat >"$state/ipam.d/demo.hcl" <<EOF
pool "demo4" {
  subnet            = "10.0.0.0/24"
  ranges            = ["10.0.0.10-10.0.0.40"]
  gateway           = "10.0.0.1"
  gateway_detection = true
}
pool "demo6" {
  subnet            = "fd00::/64"
  ranges            = ["fd00::10-fd00::40"]
  gateway           = "fd00::1"
  gateway_detection = true
}
EOF

ip netns exec $node "$agent" daemon --config-dir "$state/agent.hcl" --ipam-config-dir "$state/ipam.d" >"$state/agent.log" 2>&1 &
echo $! >"$state/agent.pid"

in_node() { ip netns exec $node "$@"; }
ready=""
for _ in $(seq 300); do
	if in_node "$agent" status --socket "$sock" >/dev/null 2>&1; then
		ready=yes
		break
	fi
	kill -0 "$(cat "$state/agent.pid")" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "the agent did not become ready; its log:" >&2
	cat "$state/agent.log" >&2
	exit 1
fi

a="ip netns exec $node $agent"
if [ "${SANDBOX_DEMO:-}" = 1 ]; then
	set +e
	echo "== check busy"
	$a check --socket "$sock" --interface eth0 --ip 10.0.0.10/24 --gateway 10.0.0.1
	echo "exit=$?"
	echo "== check free"
	$a check --socket "$sock" --interface eth0 --ip 10.0.0.50/24 --gateway 10.0.0.1 --ip fd00::50/64 --gateway fd00::1
	echo "exit=$?"
	echo "== ipam allocate"
	$a ipam allocate --socket "$sock" --container-id demo1 --interface eth0 --pool demo4 --pool demo6
	echo "exit=$?"
	echo "== ipam pools"
	$a ipam pools --socket "$sock"
	echo "exit=$?"
	echo "== status"
	$a status --socket "$sock"
	echo "exit=$?"
	echo "== metric"
	$a metric --config-dir "$state/agent.hcl"
	echo "exit=$?"
	exit 0
fi

cat <<EOF

spiderpool-agent is running in a sandbox (network namespace $node).
LAN 10.0.0.0/24 and fd00::/64: gateway 10.0.0.1 / fd00::1, a neighbour
owning 10.0.0.10 / fd00::10 (MAC 02:00:00:00:00:10). Log: $state/agent.log

Try, in another terminal (as root):

  $a check --socket $sock --interface eth0 --ip 10.0.0.10/24 --gateway 10.0.0.1
      the neighbour owns it: BLOCK, exit 1
  $a check --socket $sock --interface eth0 --ip 10.0.0.50/24 --gateway 10.0.0.1 --ip fd00::50/64 --gateway fd00::1
      free, and both gateways answer: PASS, exit 0
  $a ipam allocate --socket $sock --container-id demo1 --interface eth0 --pool demo4 --pool demo6
      a dual-stack pair from the demo pools, checked on the wire (10.0.0.10 and
      fd00::10 belong to the neighbour and are skipped if met)
  $a ipam pools --socket $sock
  $a status --socket $sock
  ip netns exec $node curl -s localhost:5710/v1/runtime/readiness
  $a metric --config-dir $state/agent.hcl
  ip netns exec $nb ip link set eth0 down      then check 10.0.0.10 again

Ctrl-C here stops the agent and removes the sandbox (or: make run-clean).
EOF
wait "$(cat "$state/agent.pid")" || true
