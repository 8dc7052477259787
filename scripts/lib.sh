# shellcheck shell=bash
# scripts/lib.sh: helpers shared by scripts/dev, scripts/test and .ci/run. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets ROOT (the repo root) and defines functions; it changes nothing by itself.

# shellcheck disable=SC2034  # the lists are used by the scripts that source this file
# --- the Debian packages each script needs: extend these lists, nowhere else ------------------------
# dev:  python3 (scripts/demo-worker), pkg-config, and the headers of every `systemLibrary` target of
#       Package.swift (libpq-dev, libhiredis-dev): every build needs them, not only the tests'.
#       scripts/test checks that each `.apt([...])` provider named in Package.swift is listed here.
#       poolvisor speaks sd_notify and the journal's stream protocol itself: no libsystemd.
DEV_PACKAGES=(python3 pkg-config libpq-dev libhiredis-dev)
# test: everything dev needs, plus what the integration tests run against; systemd for systemd-analyze
# (scripts/verify-units) and the sandbox, util-linux for setpriv (clients run as nobody).
# examples: Debian's python3 with venv (each library in examples/ gets its own, from PyPI at the pinned
#       versions of its requirements.txt) and a Redis to run them against.
EXAMPLE_PACKAGES=(python3 python3-venv redis-server util-linux)
TEST_PACKAGES=("${DEV_PACKAGES[@]}" "${EXAMPLE_PACKAGES[@]}" postgresql supervisor systemd python3-prometheus-client)
# package: scripts/package builds the .deb with dpkg-deb and dpkg-shlibdeps (dpkg-dev) and strips the
#       binary (binutils); `scripts/package --lint` adds lintian (128 small packages, 16 MB, ~40 s to
#       install), which is why it is not among the test packages: the tests install a .deb, they do not
#       lint it.
PACKAGE_PACKAGES=(dpkg-dev binutils lintian)

# The queue libraries with an example in examples/<library>/ (and an integration test each).
EXAMPLE_LIBRARIES=(arq dramatiq taskiq bullmq celery rq)

SWIFT_VERSION_WANTED="6.3.1"
SWIFT_FALLBACK_DIR="/opt/swift/usr/bin"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root, and sudo is not installed: run this script as root"
    fi
}

# Installs whichever of the given Debian packages are missing. Touches apt only if one is missing.
ensure_packages() {
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        warn "not a Debian-like system (no dpkg/apt-get): make sure these are installed: $*"
        return 0
    fi
    local missing=() pkg
    for pkg in "$@"; do
        # dpkg -s succeeds for removed-but-not-purged packages too, so look at the Status line.
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "packages: all $# present"
        return 0
    fi
    say "packages: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Puts the Swift toolchain on PATH (from /opt/swift when it is not already there) or explains how to
# install it and exits.
ensure_swift() {
    if ! command -v swift >/dev/null 2>&1 && [[ -x "$SWIFT_FALLBACK_DIR/swift" ]]; then
        export PATH="$SWIFT_FALLBACK_DIR:$PATH"
    fi
    if ! command -v swift >/dev/null 2>&1; then
        cat >&2 <<EOF
error: the Swift toolchain was not found: no 'swift' in PATH, and nothing at $SWIFT_FALLBACK_DIR/swift.
poolvisor needs Swift $SWIFT_VERSION_WANTED. Either:
  * install it with swiftly (it also tells you which system packages the toolchain needs):
      curl -O "https://download.swift.org/swiftly/linux/swiftly-\$(uname -m).tar.gz"
      tar zxf "swiftly-\$(uname -m).tar.gz" && ./swiftly init --skip-install --quiet-shell-followup
      . ~/.local/share/swiftly/env.sh && swiftly install --use $SWIFT_VERSION_WANTED
  * or unpack the Debian 12 toolchain from https://www.swift.org/install/linux/ so that
    $SWIFT_FALLBACK_DIR/swift exists (the tarball's usr/ goes to /opt/swift/usr/):
      https://download.swift.org/swift-$SWIFT_VERSION_WANTED-release/debian12/swift-$SWIFT_VERSION_WANTED-RELEASE/swift-$SWIFT_VERSION_WANTED-RELEASE-debian12.tar.gz
      (on arm64: .../debian12-aarch64/.../swift-$SWIFT_VERSION_WANTED-RELEASE-debian12-aarch64.tar.gz)
    These scripts put $SWIFT_FALLBACK_DIR on PATH by themselves.
EOF
        exit 1
    fi
    local version
    version="$(swift --version 2>&1 | grep -o 'Swift version [0-9.]*' | head -n1 || true)"
    if [[ "$version" != "Swift version $SWIFT_VERSION_WANTED" ]]; then
        warn "expected Swift $SWIFT_VERSION_WANTED, found '${version:-unknown}' at $(command -v swift)"
    else
        say "swift: $SWIFT_VERSION_WANTED at $(command -v swift)"
    fi
}

# git records only 0644/0755, but env files hold secrets and poolvisor wants them 0600 or 0640.
fix_example_env_modes() {
    local f
    while IFS= read -r -d '' f; do
        chmod 600 "$f"
    done < <(find "$ROOT/examples" -name '*.env' -type f -not -path '*/.venv/*' -print0 2>/dev/null)
}

# DIR/.venv: Debian's python3 with exactly the versions in DIR/requirements.txt (DIR relative to the
# repo root). Made again only when requirements.txt changes (its hash is kept in the venv).
ensure_venv() {
    local rel="$1" dir="$ROOT/$1" venv="$ROOT/$1/.venv" want
    [[ -f "$dir/requirements.txt" ]] || die "no $rel/requirements.txt"
    want="$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.requirements-sha256" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" || die "python3 -m venv failed for $rel (is python3-venv installed?)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$dir/requirements.txt" \
        || { rm -rf "$venv"; die "pip could not install $rel/requirements.txt"; }
    printf '%s\n' "$want" > "$venv/.requirements-sha256"
}

# examples/<library>/.venv, for the queue library's example worker.
ensure_example_venv() {
    [[ -f "$ROOT/examples/$1/requirements.txt" ]] || die "no example named '$1' (examples/$1/requirements.txt)"
    ensure_venv "examples/$1"
}

# Tests/Schemas/.venv: kubernetes-validate and jsonschema, for Tests/Schemas/validate.py, which the
# PoolvisorExportTests run on `poolvisor export`'s output.
SCHEMAS_DIR="Tests/Schemas"

# Every venv the tests use: each example's and Tests/Schemas', in parallel (pip spends its time waiting
# on PyPI).
ensure_test_venvs() {
    local library pids=() failed=0
    for library in "${EXAMPLE_LIBRARIES[@]}"; do
        ensure_example_venv "$library" &
        pids+=($!)
    done
    ensure_venv "$SCHEMAS_DIR" &
    pids+=($!)
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [[ $failed -eq 0 ]] || die "could not set up every virtual environment the tests use (see above)"
}

# Phase timing: `phase NAME` starts a phase (ending the previous one); `phase_end` ends the last one.
# Every finished phase is remembered, and print_phase_times lists them.
PHASE_NAME=""
PHASE_START=0
PHASE_TIMES=()
_now() { date +%s.%N; }
phase() {
    phase_end
    PHASE_NAME="$1"
    PHASE_START="$(_now)"
    say "$1"
}
phase_end() {
    [[ -n "$PHASE_NAME" ]] || return 0
    local took
    took="$(awk -v a="$PHASE_START" -v b="$(_now)" 'BEGIN { printf "%.1f", b - a }')"
    PHASE_TIMES+=("$(printf '%-9s %7s s' "$PHASE_NAME" "$took")")
    say "$PHASE_NAME: ${took} s"
    PHASE_NAME=""
}
print_phase_times() {
    phase_end
    [[ ${#PHASE_TIMES[@]} -gt 0 ]] || return 0
    printf '==> time per phase\n' >&2
    printf '    %s\n' "${PHASE_TIMES[@]}" >&2
}

# The Debian packages Package.swift's `systemLibrary` targets name as `.apt([...])` providers, one per
# line. A build needs every one of them, so scripts/dev must install them all.
package_apt_providers() {
    grep -oE '\.apt\(\[[^]]*\]' "$ROOT/Package.swift" | grep -oE '"[^"]+"' | tr -d '"' | sort -u
}

# Fails when a provider of Package.swift is missing from DEV_PACKAGES (the README's first command,
# scripts/dev, would then fail to build on a fresh machine).
check_dev_packages_cover_package_swift() {
    local need missing=()
    for need in $(package_apt_providers); do
        printf '%s\n' "${DEV_PACKAGES[@]}" | grep -qx -- "$need" || missing+=("$need")
    done
    [[ ${#missing[@]} -eq 0 ]] || die "Package.swift needs the Debian package(s) ${missing[*]}, which DEV_PACKAGES in scripts/lib.sh does not list: scripts/dev would fail to build on a fresh machine"
}
