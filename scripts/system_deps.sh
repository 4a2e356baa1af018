#!/usr/bin/env bash
# The system packages stepwise's two commands need beyond pip, installed when missing.
#
#   bash scripts/system_deps.sh python             # `make demo`, `make install`: Python 3.11 with venv
#   bash scripts/system_deps.sh python test        # `make test`: also chromium + chromedriver, PostgreSQL
#
# What each part needs (Debian package names):
#   python    $PYTHON (default python3.11) with its venv/ensurepip module    python3.11 python3.11-venv
#   browser   chromium and chromedriver, for tests/test_browser.py           chromium chromium-driver
#   postgres  PostgreSQL's server binaries (initdb, pg_ctl), for the store
#             tests, which start a throwaway server themselves               postgresql
# `test` means browser + postgres. STEPWISE_SKIP_BROWSER=1 / STEPWISE_SKIP_POSTGRES=1 skip those
# tests and this script's check for them; STEPWISE_TEST_POSTGRES_URL (a running server) also
# makes the PostgreSQL binaries unnecessary.
#
# Missing packages are installed with apt-get when this runs as root on a machine that has it;
# otherwise the script stops with one message naming the packages and the switches. Nothing is
# installed when everything is present, so it is cheap to run before every `make test`.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
APT_GET=${STEPWISE_APT_GET:-apt-get}  # tests point this at a command that is not there

want_python=0 want_browser=0 want_postgres=0
for part in "$@"; do
    case "$part" in
        python) want_python=1 ;;
        browser) want_browser=1 ;;
        postgres) want_postgres=1 ;;
        test) want_browser=1; want_postgres=1 ;;
        *) echo "system_deps.sh: unknown part '$part' (python, browser, postgres or test)" >&2; exit 2 ;;
    esac
done
[ "${STEPWISE_SKIP_BROWSER:-}" = 1 ] && want_browser=0
{ [ "${STEPWISE_SKIP_POSTGRES:-}" = 1 ] || [ -n "${STEPWISE_TEST_POSTGRES_URL:-}" ]; } && want_postgres=0

packages=()
switches=()

if [ "$want_python" = 1 ] && ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of the interpreter package.
    version=${PYTHON#python}
    packages+=("python${version:-3}" "python${version:-3}-venv")
fi
if [ "$want_browser" = 1 ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
    packages+=(chromium chromium-driver)
    switches+=("STEPWISE_SKIP_BROWSER=1")
fi
if [ "$want_postgres" = 1 ] && ! command -v initdb >/dev/null 2>&1 \
        && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    packages+=(postgresql)
    switches+=("STEPWISE_SKIP_POSTGRES=1")
fi

[ "${#packages[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v "$APT_GET" >/dev/null 2>&1; then
    echo "installing system packages: ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if { "$APT_GET" update -qq && "$APT_GET" install -y -qq --no-install-recommends "${packages[@]}"; } </dev/null; then
        exit 0
    fi
    why="apt-get could not install them"
else
    why="they are missing and this is not root with apt-get"
fi
skip=""
[ "${#switches[@]}" -gt 0 ] && skip="; or skip the tests that need them with ${switches[*]}"
echo "error: system packages needed: ${packages[*]} ($why). Install them (Debian: apt-get install ${packages[*]})$skip" >&2
exit 1
