#!/usr/bin/env bash
# entrypoint.sh -- the demo directory container's two jobs:
#
#   slapd                 seed the directory on the first start (data kept
#                         across restarts of the container), then run slapd
#                         on ldap://0.0.0.0:389 as the openldap user
#   make-cert DIR SAN     write a self-signed gateway.crt/gateway.key into
#                         DIR unless present, readable by the gateway's user
#
# Environment: LDAP_ADMIN_PASSWORD (required for slapd), the password of
# cn=admin,dc=example,dc=org and of cn=scim-gateway,dc=example,dc=org.
set -euo pipefail

# shellcheck source=deploy/lib/slapd.sh
source /opt/scim-demo/lib/slapd.sh
# shellcheck source=deploy/lib/demo-tls.sh
source /opt/scim-demo/lib/demo-tls.sh

DATA_DIR=/var/lib/scim-demo-ldap
# The gateway image's user (distroless "nonroot").
GATEWAY_UID=65532

case ${1:-slapd} in
slapd)
    [[ -n ${LDAP_ADMIN_PASSWORD:-} ]] || die "set LDAP_ADMIN_PASSWORD"
    if [[ ! -f $DATA_DIR/slapd.conf ]]; then
        step "seeding the demo directory in $DATA_DIR"
        seed_slapd "$DATA_DIR" "$LDAP_ADMIN_PASSWORD"
        chown -R openldap:openldap "$DATA_DIR"
    fi
    # slapd binds port 389 as root, then runs as openldap; -d keeps it in the
    # foreground with its messages on stderr.
    exec "$SLAPD_BIN" -f "$DATA_DIR/slapd.conf" -h "ldap://0.0.0.0:389/" \
        -u openldap -g openldap -d none
    ;;
make-cert)
    dir=${2:?usage: make-cert DIR SAN}
    make_demo_certificate "$dir" "${3:?usage: make-cert DIR SAN}"
    chown "$GATEWAY_UID:$GATEWAY_UID" "$dir/gateway.key" "$dir/gateway.crt"
    ;;
*)
    exec "$@"
    ;;
esac
