#!/usr/bin/env bash
# bench.sh -- the benchmark: the release gateway (SCIM over HTTPS) against the same work sent
# straight to slapd with ldap3, interleaved, at concurrency 1, 8 and 64, plus Entra's initial
# cycle and the memory of 1,000 idle keep-alive connections. Starts its own slapd and gateway
# on free loopback ports, prints a markdown table with the targets checked, and writes
# target/bench/bench.json.
#
#   ./deploy/bench.sh            # the full run (about 20-25 minutes on 2 cores)
#   ./deploy/bench.sh --quick    # a smoke run of a minute or two
#   ./deploy/bench.sh --help     # every option (scenarios, durations, sizes, output path)
#
# Arguments are passed to the load generator (examples/bench). Exits non-zero when a request
# fails, not when a target is missed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib/slapd.sh
source deploy/lib/slapd.sh

step "checking Debian packages (slapd, ldap-utils, openssl)"
ensure_packages slapd ldap-utils openssl

# The gateway and the load generator each hold one file per connection: 1,000 idle TLS
# connections and their slapd connections need more than the common default of 1,024.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard >= 8192)); then
    ulimit -n 8192
else
    ulimit -n "$hard"
fi

step "cargo build --release --locked (the gateway and the load generator)"
cargo build --release --locked --bin scim-ldap-gateway --example bench

target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $target_dir ]] || die "cannot find cargo's target directory"

step "running the benchmark"
exec "$target_dir/release/examples/bench" "$@"
