# shellcheck shell=bash
#
# deploy/lib/demo-tls.sh -- a self-signed server certificate for trials.
# Source it from bash scripts; it defines one function and changes no shell
# options. Used by quickstart.sh and by the compose service "tls-init".
#
#   make_demo_certificate DIR SAN   write DIR/gateway.crt and DIR/gateway.key
#                                   (mode 600) unless both exist; SAN is an
#                                   openssl subjectAltName value

make_demo_certificate() {
    local dir=$1 san=$2
    if [[ -f $dir/gateway.crt && -f $dir/gateway.key ]]; then
        echo "    reusing $dir/gateway.crt" >&2
        return 0
    fi
    mkdir -p "$dir"
    # A leaf (CA:FALSE) certificate, trusted directly by clients via --cacert.
    # Key written with umask 077, i.e. mode 600.
    (
        umask 077
        openssl req -x509 -nodes -days 825 \
            -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout "$dir/gateway.key" -out "$dir/gateway.crt" \
            -subj "/CN=localhost" \
            -addext "subjectAltName=$san" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -addext "keyUsage=critical,digitalSignature" \
            -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    ) || {
        echo "error: openssl could not create the self-signed certificate in $dir" >&2
        return 1
    }
    chmod 600 "$dir/gateway.key"
    chmod 644 "$dir/gateway.crt"
    echo "    created $dir/gateway.crt (self-signed, 825 days, $san)" >&2
}
