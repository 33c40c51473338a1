#!/bin/sh
# changelog.sh VERSION EPOCH - print the package's Debian changelog (a native
# package's /usr/share/doc/spiderpool-agent/changelog.gz): one entry for the
# version being built, dated at the commit (EPOCH, seconds), so that a rebuild
# is identical. The project's history is its git log.
set -e
version=${1:?usage: changelog.sh VERSION EPOCH}
epoch=${2:-0}
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
date=$(LC_ALL=C date -u -R -d "@$epoch")
cat <<END
spiderpool-agent ($version) unstable; urgency=medium

  * Built from commit $commit. The changes are in the project's git history.

 -- spiderpool-agent maintainers <spiderpool-agent@users.noreply.github.com>  $date
END
