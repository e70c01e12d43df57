#!/usr/bin/env bash
# quickstart.sh -- try the gateway locally against a throwaway OpenLDAP.
#
#   ./deploy/quickstart.sh            (from any directory)
#
# Installs slapd/ldap-utils/openssl if missing, starts OpenLDAP on
# 127.0.0.1:3389 with fresh demo data under .run/slapd, makes a self-signed
# TLS certificate under .run/tls, builds the gateway and runs it in the
# foreground on https://127.0.0.1:8443. Ctrl-C stops the gateway and slapd.
#
# Environment:
#   LDAP_ADMIN_PASSWORD  password of cn=admin,dc=example,dc=org (default: admin)
#   SCIM_TOKEN           bearer token clients must send (default: random)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib/slapd.sh
source deploy/lib/slapd.sh
# shellcheck source=deploy/lib/demo-tls.sh
source deploy/lib/demo-tls.sh

LDAP_PORT=3389
GATEWAY_PORT=8443
RUN_DIR=$PWD/.run
SLAPD_DIR=$RUN_DIR/slapd
TLS_DIR=$RUN_DIR/tls
CONFIG=config/gateway.toml
GATEWAY_BIN=${CARGO_TARGET_DIR:-./target}/release/scim-ldap-gateway

gateway_pid=""
# shellcheck disable=SC2317  # invoked from the traps below
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $gateway_pid ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    if [[ -f $SLAPD_DIR/slapd.pid ]]; then
        step "stopping slapd"
        stop_slapd "$SLAPD_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "1/6 checking Debian packages (slapd, ldap-utils, openssl)"
ensure_packages slapd ldap-utils openssl
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install a Rust toolchain (https://rustup.rs) and re-run"
[[ -f $CONFIG ]] || die "$CONFIG is missing"

# An instance left over from an interrupted run is ours to stop; anything
# else on our ports is somebody else's and we refuse to continue.
stop_slapd "$SLAPD_DIR"
port_in_use "$LDAP_PORT" &&
    die "port $LDAP_PORT is already in use on 127.0.0.1 (needed for the demo LDAP server)"
port_in_use "$GATEWAY_PORT" &&
    die "port $GATEWAY_PORT is already in use on 127.0.0.1 (needed for the gateway)"

export LDAP_ADMIN_PASSWORD=${LDAP_ADMIN_PASSWORD:-admin}

step "2/6 starting throwaway OpenLDAP on ldap://127.0.0.1:$LDAP_PORT (data in .run/slapd)"
slapd_pid=$(start_slapd "$SLAPD_DIR" "$LDAP_PORT" "$LDAP_ADMIN_PASSWORD")
echo "    slapd pid $slapd_pid; users alice, bob, carol under ou=people,dc=example,dc=org" >&2

step "3/6 TLS certificate"
make_demo_certificate "$TLS_DIR" "DNS:localhost,IP:127.0.0.1" ||
    die "no TLS certificate in $TLS_DIR"

step "4/6 cargo build --release"
cargo build --release

step "5/6 credentials"
if [[ -z ${SCIM_TOKEN:-} ]]; then
    SCIM_TOKEN=$(openssl rand -hex 32)
    echo "    generated SCIM_TOKEN=$SCIM_TOKEN" >&2
fi
export SCIM_TOKEN
cat >&2 <<MSG
    Try it (in another terminal):

    export SCIM_TOKEN=$SCIM_TOKEN
    curl --cacert .run/tls/gateway.crt -H "Authorization: Bearer \$SCIM_TOKEN" \\
      'https://127.0.0.1:$GATEWAY_PORT/scim/v2/Users?filter=userName%20eq%20%22alice%22'

    curl --cacert .run/tls/gateway.crt -H "Authorization: Bearer \$SCIM_TOKEN" \\
      -H 'Content-Type: application/scim+json' -X POST \\
      https://127.0.0.1:$GATEWAY_PORT/scim/v2/Users -d '{
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "dave", "externalId": "ext-dave",
        "name": {"givenName": "Dave", "familyName": "Davis"},
        "emails": [{"value": "dave@example.org", "primary": true}],
        "active": true }'

    See what the directory now holds:

    ldapsearch -x -H ldap://127.0.0.1:$LDAP_PORT -D cn=admin,dc=example,dc=org -w "\$LDAP_ADMIN_PASSWORD" \\
      -b ou=people,dc=example,dc=org '(uid=dave)' '*' '+'

    Watch it (admin listener, plain HTTP on loopback):

    curl http://127.0.0.1:9464/metrics      # Prometheus, scim_gateway_*
    curl http://127.0.0.1:9464/readyz       # 200 while the directory answers
    kill -HUP <gateway pid>                 # reload config/tokens/certificate

MSG

step "6/6 running the gateway (Ctrl-C stops it and slapd)"
# Run in the background and wait, so that INT/TERM reach our traps at once.
"$GATEWAY_BIN" serve --config "$CONFIG" &
gateway_pid=$!
status=0
wait "$gateway_pid" || status=$?
gateway_pid=""
exit "$status"
