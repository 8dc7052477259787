#!/usr/bin/env bash
# scripts/install.sh: build poolvisor and install it as a systemd service.
#
#   sudo scripts/install.sh                  # build (release), install, systemctl daemon-reload
#   sudo scripts/install.sh --enable-now     # ... and systemctl enable --now poolvisor.service
#   scripts/install.sh --no-build            # install the release binary built before (.build/release)
#   scripts/install.sh --binary PATH         # install this binary instead of building one
#   DESTDIR=/tmp/root scripts/install.sh     # install under /tmp/root (packaging, tests): no root needed,
#                                            # no daemon-reload, nothing enabled
#   PREFIX=/opt/poolvisor scripts/install.sh # binary in $PREFIX/bin (default /usr/local); the units point there
#
# Installs $PREFIX/bin/poolvisor, /etc/systemd/system/poolvisor.service and poolvisor@.service, and
# /etc/poolvisor/pools.toml (systemd/pools.toml, a placeholder pool) only when there is no pools file
# yet: an operator's file is never overwritten. Files that are already up to date are left alone, so a
# second run changes nothing. Nothing is enabled, started or restarted unless --enable-now is given; a
# running poolvisor moves to a new binary with `poolvisor upgrade` (in place, its workers keep running).
# To keep .build/ owned by you, build as yourself and install as root:
#   swift build -c release --static-swift-stdlib && sudo scripts/install.sh --no-build
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# How the release binary is built: the same as scripts/bench.
POOLVISOR_BUILD=(swift build -c release --static-swift-stdlib)
# The binary path written in the unit files; rewritten when PREFIX differs.
UNIT_BINARY="/usr/local/bin/poolvisor"

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
BINARY=""
BUILD=1
ENABLE_NOW=0

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary)      [[ $# -ge 2 ]] || die "--binary needs a path"; BINARY="$2"; BUILD=0; shift ;;
        --binary=*)    BINARY="${1#*=}"; BUILD=0 ;;
        --no-build)    BUILD=0 ;;
        --prefix)      [[ $# -ge 2 ]] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
        --prefix=*)    PREFIX="${1#*=}" ;;
        --enable-now)  ENABLE_NOW=1 ;;
        -h|--help)     usage; exit 0 ;;
        *)             die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

PREFIX="${PREFIX%/}"
[[ "$PREFIX" == /* ]] || die "PREFIX must be an absolute path, not '$PREFIX'"
[[ "$PREFIX" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "PREFIX may contain only letters, digits and . _ / + - (it goes into ExecStart=): '$PREFIX'"
if [[ -n "$DESTDIR" ]]; then
    DESTDIR="$(mkdir -p "$DESTDIR" && cd "$DESTDIR" && pwd)"
    [[ "$DESTDIR" != / ]] || DESTDIR=""
fi
if [[ -n "$DESTDIR" && $ENABLE_NOW -eq 1 ]]; then
    die "--enable-now cannot be combined with DESTDIR (nothing runs from $DESTDIR)"
fi
if [[ -z "$DESTDIR" && $EUID -ne 0 ]]; then
    die "installing into / needs root: run it with sudo (or set DESTDIR=/some/dir to install elsewhere)"
fi

SYSTEMD_RUNNING=0
[[ -d /run/systemd/system ]] && SYSTEMD_RUNNING=1
if [[ $ENABLE_NOW -eq 1 && $SYSTEMD_RUNNING -eq 0 ]]; then
    die "--enable-now: systemd is not running on this machine (no /run/systemd/system)"
fi

# --- the binary ----------------------------------------------------------------------------------------
if [[ $BUILD -eq 1 ]]; then
    ensure_swift
    say "build: ${POOLVISOR_BUILD[*]}"
    "${POOLVISOR_BUILD[@]}"
    BINARY="$("${POOLVISOR_BUILD[@]}" --show-bin-path)/poolvisor"
elif [[ -z "$BINARY" ]]; then
    BINARY="$ROOT/.build/release/poolvisor"
    [[ -x "$BINARY" ]] || die "--no-build: there is no $BINARY; build it first: ${POOLVISOR_BUILD[*]} (or give --binary PATH)"
fi
[[ -f "$BINARY" && -x "$BINARY" ]] || die "not an executable file: $BINARY"

CHANGED=0
UNITS_CHANGED=0
BINARY_CHANGED=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# install_file SRC DEST MODE: installs SRC as DEST (creating its directory) unless DEST already has the
# same content and mode. Sets LAST_CHANGED to 1 when it wrote something.
install_file() {
    local src="$1" dest="$DESTDIR$2" mode="$3" current
    LAST_CHANGED=0
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
        current="$(stat -c '%a' "$dest")"
        if [[ "$current" == "${mode#0}" ]]; then
            say "unchanged: $dest"
            return 0
        fi
        chmod "$mode" "$dest"
        say "mode $mode: $dest (was $current)"
    else
        local verb="installed"
        [[ -e "$dest" ]] && verb="updated"
        install -d -m 0755 "$(dirname "$dest")"
        install -m "$mode" "$src" "$dest"
        say "$verb: $dest"
    fi
    LAST_CHANGED=1
    CHANGED=1
}

install_file "$BINARY" "$PREFIX/bin/poolvisor" 0755
BINARY_CHANGED=$LAST_CHANGED

# --- the units -----------------------------------------------------------------------------------------
for unit in poolvisor.service poolvisor@.service; do
    sed "s#$UNIT_BINARY#$PREFIX/bin/poolvisor#g" "systemd/$unit" >"$TMP/$unit"
    install_file "$TMP/$unit" "/etc/systemd/system/$unit" 0644
    [[ $LAST_CHANGED -eq 0 ]] || UNITS_CHANGED=1
done

# --- the pools file: only if there is none ---------------------------------------------------------------
POOLS="/etc/poolvisor/pools.toml"
if [[ -e "$DESTDIR$POOLS" || -L "$DESTDIR$POOLS" ]]; then
    say "kept: $DESTDIR$POOLS (it exists; this script never overwrites a pools file)"
else
    install_file systemd/pools.toml "$POOLS" 0644
    say "  a placeholder pool (sleep infinity): put your pools there, every key is in docs/pools-file.md"
fi
# Check the pools file the service will run, so a broken one shows up now rather than at start.
if ! check_output="$("$DESTDIR$PREFIX/bin/poolvisor" check --config "$DESTDIR$POOLS" 2>&1)"; then
    printf '%s\n' "$check_output" >&2
    [[ $ENABLE_NOW -eq 0 ]] || die "$DESTDIR$POOLS has errors (above): not starting poolvisor"
    warn "$DESTDIR$POOLS has errors (above): poolvisor.service will not start until they are fixed"
fi

# --- systemd -------------------------------------------------------------------------------------------
if [[ -n "$DESTDIR" ]]; then
    say "DESTDIR is set: no systemctl daemon-reload"
elif [[ $SYSTEMD_RUNNING -eq 0 ]]; then
    say "systemd is not running here: no systemctl daemon-reload"
elif [[ $UNITS_CHANGED -eq 1 ]] \
    || [[ "$(systemctl show -p NeedDaemonReload --value poolvisor.service 2>/dev/null)" == yes ]] \
    || [[ "$(systemctl show -p NeedDaemonReload --value poolvisor@.service 2>/dev/null)" == yes ]]; then
    say "systemctl daemon-reload"
    systemctl daemon-reload
    CHANGED=1
else
    say "units unchanged and loaded: no systemctl daemon-reload"
fi

if [[ $ENABLE_NOW -eq 1 ]]; then
    if systemctl is-enabled --quiet poolvisor.service && systemctl is-active --quiet poolvisor.service; then
        say "poolvisor.service is already enabled and running"
    else
        say "systemctl enable --now poolvisor.service"
        systemctl enable --now poolvisor.service
        CHANGED=1
    fi
fi

# --- what next -----------------------------------------------------------------------------------------
[[ $CHANGED -eq 1 ]] || say "nothing changed: everything was already installed"
if [[ -z "$DESTDIR" && $SYSTEMD_RUNNING -eq 1 ]]; then
    running=()
    while read -r unit _; do
        [[ -n "$unit" ]] && running+=("$unit")
    done < <(systemctl list-units --plain --no-legend --state=active 'poolvisor.service' 'poolvisor@*.service' 2>/dev/null || true)
    if [[ $BINARY_CHANGED -eq 1 && ${#running[@]} -gt 0 ]]; then
        # The new binary in place, without restarting a worker: `poolvisor upgrade` (issue 18). A running
        # poolvisor too old to know the command is left alone, and said so.
        for unit in "${running[@]}"; do
            instance=()
            if [[ "$unit" == poolvisor@*.service ]]; then
                name="${unit#poolvisor@}"
                instance=(--instance "${name%.service}")
            fi
            if "$PREFIX/bin/poolvisor" upgrade "${instance[@]}"; then
                say "$unit: upgraded in place to the new binary; no worker restarted"
            else
                say "$unit: runs the old binary until restarted (its poolvisor cannot upgrade in place): systemctl restart $unit"
            fi
        done
    elif [[ $UNITS_CHANGED -eq 1 && ${#running[@]} -gt 0 ]]; then
        say "unit changes take effect at the next restart: systemctl restart ${running[*]}"
    fi
    if [[ ${#running[@]} -eq 0 && $ENABLE_NOW -eq 0 ]]; then
        say "next: edit $POOLS, then: systemctl enable --now poolvisor"
        say "      (or /etc/poolvisor/NAME.toml and: systemctl enable --now poolvisor@NAME)"
    fi
fi
