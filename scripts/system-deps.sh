#!/bin/sh
# Install the Debian packages the test suite needs: PostgreSQL 15 + PostGIS 3 (throwaway clusters for the
# store and the pgstac STAC API server), nginx (a range-capable file server for COG assets) and Chromium (the
# web app's browser tests drive it with Playwright; Playwright's own browser download is not used).
# Idempotent and fast when everything is there. Installs only when run as root; services are NOT started
# system-wide: the tests start their own throwaway instances on 127.0.0.1.
# Not root and something missing: a warning (the tests that need it skip), or an error under CI=true.
# `make bench-scale` also needs Orfeo ToolBox (otb-bin: the C++ peer it compares IR-MAD with): pass `bench`.
# Usage: scripts/system-deps.sh [--check] [bench]
#   (--check: report what is missing, install nothing, exit 1 if any; bench: Orfeo ToolBox too)
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
PACKAGES="postgresql-15-postgis-3 postgis nginx chromium"
check=0
bench=0
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        bench) bench=1 ;;
        *) echo "system-deps: unknown argument $arg (use --check and/or bench)" >&2; exit 2 ;;
    esac
done

missing=""
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || missing="$missing postgresql-15"
[ -f /usr/share/postgresql/15/extension/postgis.control ] || missing="$missing postgresql-15-postgis-3"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if [ "$bench" = 1 ]; then
    PACKAGES="$PACKAGES otb-bin"
    command -v otbcli_MultivariateAlterationDetector >/dev/null 2>&1 || missing="$missing otb-bin"
fi

if [ -z "$missing" ]; then
    echo "system-deps: PostgreSQL 15 + PostGIS, nginx and Chromium are installed"
    [ "$bench" = 1 ] && echo "system-deps: Orfeo ToolBox is installed"
    exit 0
fi
echo "system-deps: missing:$missing"
if [ "$check" = 1 ]; then
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: not root, cannot install; run as root: $0" >&2
    echo "  (or: apt-get install -y --no-install-recommends $PACKAGES); until then the tests that need them skip" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep package post-install scripts from starting services system-wide (no init system in CI containers;
# the tests start their own instances). policy-rc.d exit 101 = "action not allowed".
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { [ "$created_policy" = 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT
apt-get update
apt-get install -y --no-install-recommends $PACKAGES
echo "system-deps: installed $PACKAGES"
