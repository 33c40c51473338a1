#!/bin/sh
# prereq.sh TARGET: make sure the tools that `make TARGET` needs are here.
#
# Every tool missing is named with the Debian package that has it. As root on
# a Debian or Ubuntu machine the missing packages are installed with apt
# (saying so first); anywhere else the script stops at once with the exact
# command to run. `make test`, `make bench` and `make faults` call it first, so
# the README's two commands work on a fresh machine with only Go and make.
set -eu

target=${1:-test}

# tool:package pairs each target needs. The namespace tests need iproute2;
# tcpdump, arping and ndisc6 are the independent witnesses in test/probe and
# test/e2e; systemd-analyze checks the unit; promtool tests the alert rules;
# lintian and groff check the package and its man page; dpkg-deb reads it;
# etcd (etcd-server) is the real etcd that test/etcdlab starts for the IPAM
# etcd store's tests and the benchmark's ipam-store rows; the distribution's
# CNI plugins (/usr/lib/cni, checked by a path: they are not on PATH) are what
# test/cni checks the shipped conflists against and what test/podman's
# Podman runs; podman (its CNI backend, with conmon and runc), busybox-static
# (the image) and nsenter are the rest of that runtime.
common="ip:iproute2 bridge:iproute2 tcpdump:tcpdump arping:iputils-arping ndisc6:ndisc6 git:git"
case "$target" in
test)
	need="$common /usr/lib/cni/macvlan:containernetworking-plugins /usr/lib/cni/bridge:containernetworking-plugins systemd-analyze:systemd promtool:prometheus lintian:lintian groff:groff-base man:man-db dpkg-deb:dpkg setpriv:util-linux etcd:etcd-server podman:podman conmon:conmon runc:runc nsenter:util-linux busybox:busybox-static"
	;;
bench | faults)
	need="$common etcd:etcd-server"
	;;
run)
	need="ip:iproute2 bridge:iproute2"
	;;
*)
	echo "prereq.sh: unknown target $target (test, bench, faults, run)" >&2
	exit 2
	;;
esac

missing_tools=""
missing_pkgs=""
for pair in $need; do
	tool=${pair%%:*}
	pkg=${pair#*:}
	if ! command -v "$tool" >/dev/null 2>&1; then
		missing_tools="$missing_tools $tool"
		case " $missing_pkgs " in
		*" $pkg "*) ;;
		*) missing_pkgs="$missing_pkgs $pkg" ;;
		esac
	fi
done

if [ -z "$missing_pkgs" ]; then
	exit 0
fi

cmd="apt-get install -y --no-install-recommends$missing_pkgs"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "make $target needs:$missing_tools (packages:$missing_pkgs)." >&2
	if command -v apt-get >/dev/null 2>&1; then
		echo "Install them as root with:  apt-get update && $cmd" >&2
		echo "(make $target must run as root anyway: its tests build network namespaces.)" >&2
	else
		echo "This is not a Debian or Ubuntu machine: install the equivalent packages for it." >&2
	fi
	exit 1
fi

echo "make $target: installing$missing_pkgs (for:$missing_tools)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null
for pair in $need; do
	tool=${pair%%:*}
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "make $target: $tool is still missing after installing${missing_pkgs}" >&2
		exit 1
	fi
done
