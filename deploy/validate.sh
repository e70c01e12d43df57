#!/usr/bin/env bash
# validate.sh -- check the deployment kit under deploy/ (Kubernetes manifests,
# compose.yaml and the Dockerfiles, the systemd unit, the Prometheus rules and
# their unit tests, the Grafana dashboard); deploy/validate.py lists what each
# check does. Run by deploy/test.sh before the Rust tests; on its own:
#
#   ./deploy/validate.sh [GATEWAY_BINARY]
#
# GATEWAY_BINARY (default: the release build in the cargo target folder) is
# what `systemd-analyze verify` runs the unit against. Installs python3-venv,
# systemd and prometheus (promtool) if missing, and kubernetes-validate from
# PyPI into a virtualenv under ~/.cache (once; later runs reuse it, offline).
# Exits non-zero, listing every problem, if anything does not check out.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib/slapd.sh
source deploy/lib/slapd.sh

# The schemas it ships cover Kubernetes 1.25 to 1.37; validate.py picks 1.30.
KUBERNETES_VALIDATE_VERSION=1.37.0
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/scim-ldap-gateway/validate-venv-$KUBERNETES_VALIDATE_VERSION
BINARY=${1:-${CARGO_TARGET_DIR:-target}/release/scim-ldap-gateway}

step "checking Debian packages for the deployment checks (python3-venv, systemd, prometheus)"
ensure_packages python3-venv systemd prometheus
for tool in systemd-analyze promtool; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing although its package is installed"
done
[[ -x $BINARY ]] ||
    die "$BINARY is not a built gateway; run cargo build --release --locked first (or pass the binary)"

if ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
    step "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
    rm -rf "$VENV"
    # Debian's interpreter, so the virtualenv does not depend on a user's pyenv.
    /usr/bin/python3 -m venv "$VENV" || die "cannot create the virtualenv $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
        die "cannot install kubernetes-validate from PyPI into $VENV"
fi

step "validating the deployment kit (deploy/validate.py)"
"$VENV/bin/python" deploy/validate.py --binary "$BINARY" ||
    die "the deployment kit has problems (listed above)"
