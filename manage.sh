#!/usr/bin/env bash
# The two commands of the README:
#   ./manage.sh start [--config FILE]   set everything up, then run the node (DICOM 11112, HTTP 8181)
#   ./manage.sh test                    set everything up, then run ruff, mypy and the whole test suite
#                                       on SQLite, then again on PostgreSQL, then the DICOM tests
#                                       once more without the DIMSE fast path (on SQLite)
# Set-up is idempotent: Debian packages are installed only when missing (as root), the virtual
# environment is created once at .venv and the pinned requirements are (re)applied.
set -euo pipefail
cd "$(dirname "$0")"

# The DICOM tests run a second time with dicom.fast_path = false: the node keeps every promise
# on plain pynetdicom too (node/dimse/fastpath/installer.py). C-STORE, C-FIND, C-MOVE, C-GET,
# C-ECHO and the SCU, association requests and limits, PDU limits, refused data sets, full disk.
DICOM_TESTS=(
    tests/test_store_scp.py tests/test_store_edge_cases.py tests/test_store_full_disk.py
    tests/test_dataset_refusals.py tests/test_find_scp.py tests/test_move_get_scp.py
    tests/test_dicom_callers.py tests/test_association_requests.py tests/test_dicom_limits.py
    tests/test_scu.py
)

DEBIAN_PACKAGES=(dcmtk orthanc orthanc-dicomweb dicom3tools xorriso genisoimage nginx-light postgresql systemd chromium)

install_debian_packages() {
    local missing=()
    # npm may already come with a Node.js from elsewhere (NodeSource's nodejs conflicts with
    # Debian's npm): only a machine without any npm gets Debian's.
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Orthanc's package tries to start its service; the tests start their own instances.
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q "${missing[@]}" \
        || { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
             apt-get install -y -q "${missing[@]}"; }
    $sudo systemctl stop orthanc 2>/dev/null || $sudo service orthanc stop 2>/dev/null || true
}

install_python_packages() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    local stamp=.venv/.requirements.sha
    local want
    want=$(sha256sum requirements.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        .venv/bin/pip install -q --upgrade pip
        .venv/bin/pip install -q -r requirements.txt
        echo "$want" > "$stamp"
    fi
}

# Browser apps from the npm registry, pinned in package-lock.json: OHIF Viewer (its prebuilt
# dist/, prepared for /viewer/ when the node starts) and OpenSeadragon.
install_browser_packages() {
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
        npm ci --no-audit --no-fund -q && touch node_modules
    fi
}

setup() {
    install_debian_packages
    install_python_packages
    install_browser_packages
}

case "${1:-}" in
    start)
        shift
        setup
        exec .venv/bin/python -m node serve "$@"
        ;;
    test)
        shift
        setup
        .venv/bin/ruff check .
        .venv/bin/mypy
        # The whole suite on SQLite (the default), then on PostgreSQL (a private cluster the
        # tests start) every test whose outcome can depend on the SQL dialect (the others:
        # tests/conftest.py's DIALECT_NEUTRAL modules and tests marked dialect_neutral), then
        # the DICOM tests without the fast path; every pass runs even when an earlier one fails.
        status=0
        echo "== pytest on SQLite"
        .venv/bin/python -m pytest -q "$@" || status=$?
        echo "== pytest on PostgreSQL"
        VIEWNODE_TEST_DB=postgresql .venv/bin/python -m pytest -q --dialect-only "$@" || status=$?
        echo "== DICOM tests without the fast path (dicom.fast_path = false), on SQLite"
        VIEWNODE_TEST_FAST_PATH=0 .venv/bin/python -m pytest -q "${DICOM_TESTS[@]}" "$@" \
            || status=$?
        exit "$status"
        ;;
    *)
        echo "usage: $0 start [--config FILE] | test [pytest args]" >&2
        exit 2
        ;;
esac
