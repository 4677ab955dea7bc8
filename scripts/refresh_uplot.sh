#!/bin/sh
# Refresh the vendored uPlot (MIT) in the web app's static files from the npm registry.
# Run by hand when upgrading; npm is needed only here, never to install or run Skyline.
# Usage: scripts/refresh_uplot.sh [VERSION]   (default: the newest 1.6.x)
set -eu
version="${1:-1.6}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/src/skyline/services/webapp/static/vendor/uplot"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
tarball="$(npm pack --silent "uplot@$version")"
tar xzf "$tarball"
mkdir -p "$dest"
cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE "$dest/"
node -e 'process.stdout.write(require("./package/package.json").version + "\n")' > "$dest/VERSION"
echo "uPlot $(cat "$dest/VERSION") vendored in $dest"
