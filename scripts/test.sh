#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run execs this script).
#
# Works on a fresh machine and is idempotent: it first installs what the tests need when it is
# missing (the npm packages of the test OpenID Provider in tests/oidc-provider, redis-server
# for tests/external/redis_store.rs, Debian's chromium and chromium-driver for the browser
# tests, ...), then runs
#   cargo fmt --check and cargo clippy (-D warnings) over the whole workspace (the library and
#   the load harnesses in perf/, which have no tests: clippy keeps them compiling),
#   cargo doc (-D warnings) and cargo test of the library and of the development provider in
#   dev-provider/ (the workspace's default members).
# Arguments are passed on to `cargo test`, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

die() {
    printf 'scripts/test.sh: %s\n' "$*" >&2
    exit 1
}

# --------------------------------------------------------------------------------------------
# Installing what the tests need
# --------------------------------------------------------------------------------------------

APT_UPDATED=0

# apt_install PACKAGE...: installs the Debian packages that are not installed yet; runs
# `apt-get update` once, and only when something is to be installed.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${sudo[@]}" apt-get update
        APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Node.js + the pinned oidc-provider (tests/support/oidc_provider.rs starts it).
ensure_oidc_provider() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        # Debian's own nodejs (18 on bookworm): oidc-provider 8 supports Node.js 18 and later.
        apt_install nodejs npm
    fi
    echo "node $(node --version), npm $(npm --version)"
    local dir=tests/oidc-provider
    # npm ci writes node_modules/.package-lock.json; reinstall when it is missing or older
    # than the committed lockfile.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "installing $dir/node_modules (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund)
    else
        echo "$dir/node_modules is up to date"
    fi
}

# Redis for the session-store tests: installs redis-server when missing. Nothing is started
# here: tests/support/redis.rs starts a private redis-server (free loopback port, no
# persistence) for each test that needs one.
ensure_redis_server() {
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
    fi
    redis-server --version
}

# ---- Later additions: call these from the "Test dependencies" step below when tests need them.

# Headless Chromium + ChromeDriver for the browser tests (/usr/bin/chromium, /usr/bin/chromedriver).
ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        apt_install chromium chromium-driver
    fi
    # (Debian's launcher script may print a harmless shell warning on stderr.)
    chromium --version 2>/dev/null || die "chromium is installed but does not start"
    chromedriver --version
}

# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------

banner "Toolchain"
# A clean build of the suite needs a few GB in target/ (CI once failed with "No space left").
df -h . 2>/dev/null | tail -n 1 || true
cargo --version
rustc --version
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing (cargo fmt)"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing (cargo clippy)"

banner "Test dependencies"
ensure_oidc_provider
ensure_redis_server     # tests/external/redis_store.rs start their own redis-server
ensure_chromium         # the browser tests (tests/browser/): headless Chromium + ChromeDriver

banner "scripts/check-layers.sh (the module graph of src/ points down)"
bash scripts/check-layers.sh

banner "cargo fmt --all -- --check"
cargo fmt --all -- --check

banner "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

banner "cargo check --lib under --cfg fuzzing (the fuzz targets' entry points)"
# As cargo fuzz builds the library, in a target directory of its own: other RUSTFLAGS would
# invalidate the main build.
RUSTFLAGS="--cfg fuzzing -D warnings" CARGO_TARGET_DIR=target/cfg-fuzzing \
    cargo check --lib -p tower-oauth2-login

banner "cargo doc --no-deps --all-features (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

banner "cargo test --all-features"
cargo test --all-features "$@"

banner "All checks passed"
