#!/usr/bin/env bash
# exec.sh runs a Windows executable under Wine; it is meant for go test's
# -exec flag, which calls it with the test binary and its arguments:
#
#   GOOS=windows GOARCH=amd64 go test -exec "$PWD/test/wine/exec.sh" ./internal/runner/
#
# It prepares the private prefix on first use (setup.sh) and exits with the
# program's exit code, so go test sees failures as failures.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=$("$here/setup.sh")

export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# Without a display Wine's console programs still work; with one, a test
# could open windows on a developer's desktop.
unset DISPLAY WAYLAND_DISPLAY
exec /usr/lib/wine/wine64 "$@"
