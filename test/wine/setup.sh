#!/usr/bin/env bash
# setup.sh prepares a private Wine prefix that can run Go 1.26 Windows
# binaries, and prints its path.
#
#   test/wine/setup.sh            # prefix in $KANADE_WINEPREFIX or ~/.cache/kanade-wine
#
# Needs Debian's wine64 and gcc-mingw-w64-x86-64 (apt-get install wine64
# gcc-mingw-w64-x86-64). Idempotent: once the prefix is ready a stamp file
# makes later calls return at once, so `go test -exec test/wine/exec.sh` can
# call it for every test binary.
#
# Why the shim: Go's Windows runtime loads ProcessPrng from
# system32\bcryptprimitives.dll, which Wine 8 lacks; bcryptprimitives.c
# forwards it to RtlGenRandom. It is built from source here, never committed
# as a binary.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=${KANADE_WINEPREFIX:-${HOME:-/root}/.cache/kanade-wine}
wine64=/usr/lib/wine/wine64
cc=x86_64-w64-mingw32-gcc
stamp=$prefix/.kanade-ready

# The stamp records the shim's source hash so that an edited shim is rebuilt.
src_hash=$(sha256sum "$here/bcryptprimitives.c" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$src_hash" ]]; then
	echo "$prefix"
	exit 0
fi

if [[ ! -x $wine64 ]]; then
	echo "setup.sh: $wine64 not found: apt-get install wine64 gcc-mingw-w64-x86-64" >&2
	exit 2
fi
if ! command -v "$cc" >/dev/null; then
	echo "setup.sh: $cc not found: apt-get install gcc-mingw-w64-x86-64" >&2
	exit 2
fi

mkdir -p "$prefix"
# Two test binaries may start at once (go test runs packages in parallel):
# one initialises the prefix, the others wait for it.
exec 9>"$prefix/.kanade-lock"
flock 9
if [[ -f $stamp && $(cat "$stamp") == "$src_hash" ]]; then
	echo "$prefix"
	exit 0
fi

export WINEPREFIX=$prefix WINEDEBUG=-all
# No Mono/Gecko installer dialogs: nothing here needs .NET or a browser
# engine, and there is no display to answer them.
export WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY

if [[ ! -f $prefix/system.reg ]]; then
	"$wine64" wineboot -i >/dev/null 2>&1 || true
	# wineboot returns before the registry is flushed; wait for the server
	# to finish so the next start finds a complete prefix.
	/usr/lib/wine/wineserver -w || true
	if [[ ! -f $prefix/system.reg ]]; then
		echo "setup.sh: wineboot did not create $prefix" >&2
		exit 1
	fi
fi

sys32=$prefix/drive_c/windows/system32
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
"$cc" -shared -O2 -s -o "$build/bcryptprimitives.dll" "$here/bcryptprimitives.c" -ladvapi32
install -m 0644 "$build/bcryptprimitives.dll" "$sys32/bcryptprimitives.dll"

echo "$src_hash" >"$stamp"
echo "$prefix"
