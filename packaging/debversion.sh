#!/bin/sh
# debversion.sh VERSION - print the Debian package version for VERSION, the
# output of `git describe --tags --always --dirty` (the Makefile's VERSION).
#
# A Debian version must start with a digit, and must sort the way the builds
# were made:
#   v1.2.3                  1.2.3
#   v1.2.3-4-gabc1234       1.2.3+git4.gabc1234     (after 1.2.3)
#   v1.2.3-rc1              1.2.3~rc1               (before 1.2.3)
#   v1.2.3-4-gabc1234-dirty 1.2.3+git4.gabc1234+dirty
#   abc1234 (no tag)        0.0.0~git<UTC commit time>.<commit>: before every
#                           release, and in commit order among such builds
set -e

v=${1#v}
if printf '%s\n' "$v" | grep -Eq '^[0-9]+\.[0-9]+'; then
	printf '%s\n' "$v" | sed -e 's/-dirty$/+dirty/' \
		-e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)/+git\1.g\2/' \
		-e 's/-/~/g'
	exit 0
fi

when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null) || when=0
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
case "$v" in
*-dirty) suffix=+dirty ;;
*) suffix= ;;
esac
echo "0.0.0~git${when}.${commit}${suffix}"
