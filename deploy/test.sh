#!/usr/bin/env bash
# test.sh -- run the whole test suite, integration tests against a real
# OpenLDAP included. Installs slapd and ldap-utils if they are missing: the
# integration tests start their own private slapd instances and must never
# be skipped for lack of one. Checks the dependencies' licenses and sources
# with cargo-deny (installed if missing), and the deployment kit under deploy/
# (deploy/validate.sh), before the tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib/slapd.sh
source deploy/lib/slapd.sh

step "checking Debian packages (slapd, ldap-utils, ca-certificates, prometheus for promtool, Samba AD DC, 389-DS)"
ensure_packages slapd ldap-utils ca-certificates openssl prometheus samba-ad-dc samba-ad-provision samba-common-bin 389-ds-base

step "checking OpenLDAP binaries"
for bin in "$SLAPD_BIN" "$SLAPADD_BIN" "$SLAPPASSWD_BIN"; do
    [[ -x $bin ]] || die "$bin is missing although slapd is installed; the integration tests need it"
done
for bin in samba samba-tool dscreate ns-slapd; do
    command -v "$bin" >/dev/null 2>&1 ||
        die "$bin is missing although its package is installed; the Active Directory and 389-DS tests need it"
done
command -v promtool >/dev/null 2>&1 ||
    die "promtool is missing although prometheus is installed; the metrics tests need it"

# Licenses, banned crates and sources of every dependency, by deny.toml. The advisories
# check is left out: it downloads the RustSec database (see README, "Supply chain").
if ! cargo deny --version >/dev/null 2>&1; then
    step "installing cargo-deny (cargo install --locked cargo-deny)"
    cargo install --locked cargo-deny ||
        die "could not install cargo-deny; install it by hand (cargo install --locked cargo-deny) and rerun"
fi
step "cargo deny check licenses bans sources"
cargo deny check licenses bans sources ||
    die "cargo-deny refused a dependency (see above); fix it or, after review, change deny.toml"

# The fault and load tests (tests/integration/faults.rs) drive the release binary.
step "cargo build --release --locked"
cargo build --release --locked

# The deployment kit (deploy/validate.py lists the checks); the systemd unit is verified
# against the binary just built. The metric names of the alerts and the dashboard are
# checked by the Rust tests (tests/integration/deploy_assets.rs).
./deploy/validate.sh "${CARGO_TARGET_DIR:-target}/release/scim-ldap-gateway"

step "cargo test --all-targets --locked"
exec cargo test --all-targets --locked
