#!/bin/sh
# Build the web app's browser packages: install the npm packages pinned in web/package-lock.json and copy the
# files the app loads into src/sitewatch/web/static/vendor (with their licences).  The app then needs no network
# (no CDN).  Needs npm (installed from Debian's packages when missing and run as root) and the npm registry,
# at build time only.
set -eu
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "build-web: installing npm (Debian packages nodejs, npm)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "build-web: npm (Node.js 20 or later) is needed to build the web app's map libraries" >&2
    echo "  (Debian: apt-get install nodejs npm); the API and the pages work without them, the maps do not" >&2
    exit 1
fi
out=src/sitewatch/web/static/vendor
(cd web && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$out"
mkdir -p "$out"
m=web/node_modules/maplibre-gl
c=web/node_modules/@maplibre/maplibre-gl-compare
cp "$m/dist/maplibre-gl.mjs" "$m/dist/maplibre-gl-worker.mjs" "$m/dist/maplibre-gl.css" "$out/"
cp "$m/LICENSE.txt" "$out/LICENSE-maplibre-gl.txt"
cp "$c/dist/maplibre-gl-compare.js" "$c/dist/maplibre-gl-compare.css" "$out/"
cp "$c/LICENCE" "$out/LICENSE-maplibre-gl-compare.txt"
echo "build-web: $(ls "$out" | wc -l) files in $out"
