# shellcheck shell=bash
#
# deploy/lib/slapd.sh -- helpers for running a throwaway OpenLDAP server.
# Source it from bash scripts; it defines functions and a few variables and
# changes no shell options.
#
#   ensure_packages PKG...          install missing Debian packages
#   seed_slapd DIR PASSWORD         write DIR/slapd.conf and load the demo data
#   start_slapd DIR PORT PASSWORD   fresh, seeded slapd on 127.0.0.1:PORT;
#                                   prints its pid
#   stop_slapd DIR                  stop the instance started in DIR
#   port_in_use PORT                true if something accepts on 127.0.0.1:PORT
#
# The instances use deploy/ldap/{slapd.conf.in,scim-gateway.schema,seed.ldif}
# (the same files the Rust integration tests use), suffix dc=example,dc=org,
# admin DN cn=admin,dc=example,dc=org.
#
# Installing the Debian slapd package may also start a system-wide slapd on
# port 389 (its postinst does that). We never talk to it and do not need it.

SLAPD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LDAP_FILES_DIR=$(cd "$SLAPD_LIB_DIR/../ldap" && pwd)
LDAP_SUFFIX="dc=example,dc=org"
LDAP_ADMIN_DN="cn=admin,$LDAP_SUFFIX"
# Absolute paths: /usr/sbin is often not on a normal user's PATH.
SLAPD_BIN=/usr/sbin/slapd
SLAPADD_BIN=/usr/sbin/slapadd
SLAPPASSWD_BIN=/usr/sbin/slappasswd

die() {
    echo "error: $*" >&2
    exit 1
}

step() {
    echo "==> $*" >&2
}

# ensure_packages PKG... -- install whichever of the Debian packages are not
# installed yet (apt-get update runs at most once per shell).
ensure_packages() {
    local pkg status
    local -a missing=() sudo=()
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0

    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages: ${missing[*]}; apt-get is not available, so install them by hand"
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            die "missing packages: ${missing[*]}; not root and sudo is not installed. Run as root: apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    step "installing Debian packages: ${missing[*]}"
    if [[ -z ${_SLAPD_LIB_APT_UPDATED:-} ]]; then
        "${sudo[@]}" apt-get update ||
            die "apt-get update failed; cannot install ${missing[*]}"
        _SLAPD_LIB_APT_UPDATED=1
    fi
    # env(1) so that the variable survives sudo's environment reset.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
    for pkg in "${missing[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] ||
            die "package $pkg is still not installed after apt-get install"
    done
}

# port_in_use PORT -- true if a TCP connection to 127.0.0.1:PORT succeeds.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# _pid_running PID -- true if PID exists and is not a zombie.
_pid_running() {
    local pid=$1 state=""
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        # Fields: pid (comm) state ...; comm of slapd contains no spaces.
        read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null || return 1
        [[ $state != Z ]]
    fi
}

# _our_slapd DIR PID -- true if PID is a slapd started with DIR/slapd.conf
# (guards against killing an unrelated process that reused a stale pid).
_our_slapd() {
    local cmdline
    [[ -r /proc/$2/cmdline ]] || return 0 # no /proc: trust the pid file
    cmdline=$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$1/slapd.conf"* ]]
}

# stop_slapd DIR -- stop the slapd whose pid file is DIR/slapd.pid, if any.
stop_slapd() {
    local dir=$1 pidfile pid i
    pidfile=$dir/slapd.pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && _pid_running "$pid" && _our_slapd "$dir" "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            _pid_running "$pid" || break
            sleep 0.1
        done
        if _pid_running "$pid"; then
            echo "warning: slapd (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # Reap it if it is our own child; harmless otherwise.
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# seed_slapd DIR PASSWORD -- write DIR/slapd.conf and load the demo data into
# DIR/data (wiped first), with admin password PASSWORD. Nothing runs
# afterwards: start slapd with `-f DIR/slapd.conf`. Used by start_slapd and by
# the demo directory's container (deploy/docker/demo-directory).
seed_slapd() {
    local dir=$1 password=$2
    local bin hash conf ldif
    [[ -n $dir && -n $password ]] || die "usage: seed_slapd DIR PASSWORD"
    for bin in "$SLAPADD_BIN" "$SLAPPASSWD_BIN"; do
        [[ -x $bin ]] || die "$bin not found: install the Debian package slapd"
    done
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd) # slapd.conf needs absolute paths
    rm -rf "$dir/data"
    rm -f "$dir/slapd.log" "$dir/slapd.args" "$dir/slapadd.log"
    mkdir -p "$dir/data"

    hash=$("$SLAPPASSWD_BIN" -s "$password") || die "slappasswd failed"
    conf=$(<"$LDAP_FILES_DIR/slapd.conf.in")
    # Quoted replacements: bash 5.2 would otherwise expand '&' in them.
    conf=${conf//@DIR@/"$dir"}
    conf=${conf//@SCHEMA@/"$LDAP_FILES_DIR/scim-gateway.schema"}
    conf=${conf//@SUFFIX@/"$LDAP_SUFFIX"}
    conf=${conf//@ROOTPW@/"$hash"}
    printf '%s\n' "$conf" >"$dir/slapd.conf"

    # The gateway's service account, with the same password as the rootdn.
    conf=$(<"$LDAP_FILES_DIR/service-account.ldif.in")
    conf=${conf//@SUFFIX@/"$LDAP_SUFFIX"}
    conf=${conf//@PASSWORD_HASH@/"$hash"}
    printf '%s\n' "$conf" >"$dir/service-account.ldif"

    # Load the seed offline, before the server runs: fast and race-free.
    for ldif in "$LDAP_FILES_DIR/seed.ldif" "$dir/service-account.ldif"; do
        if ! "$SLAPADD_BIN" -q -f "$dir/slapd.conf" -l "$ldif" \
            >"$dir/slapadd.log" 2>&1; then
            cat "$dir/slapadd.log" >&2
            die "slapadd could not load $ldif (config: $dir/slapd.conf)"
        fi
    done
}

# start_slapd DIR PORT PASSWORD -- start a fresh OpenLDAP instance in DIR
# (created if needed; any previous instance there is stopped and its data
# wiped) listening on ldap://127.0.0.1:PORT/, seeded with seed.ldif, with
# admin password PASSWORD. Waits until it answers an admin bind (10 s at
# most) and prints its pid on stdout. Output of slapd goes to DIR/slapd.log.
start_slapd() {
    local dir=$1 port=$2 password=$3
    local pid i
    [[ -n $dir && -n $port && -n $password ]] ||
        die "usage: start_slapd DIR PORT PASSWORD"
    [[ -x $SLAPD_BIN ]] || die "$SLAPD_BIN not found: install the Debian package slapd"
    command -v ldapwhoami >/dev/null 2>&1 ||
        die "ldapwhoami not found: install the Debian package ldap-utils"

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_slapd "$dir"
    port_in_use "$port" &&
        die "port $port on 127.0.0.1 is already in use; stop whatever listens there (ss -ltnp 'sport = :$port')"
    seed_slapd "$dir" "$password"

    # -d keeps slapd in the foreground, so it is our background job and its
    # messages land in slapd.log ("none": startup errors only, no per-op
    # noise); daemonised, it would log to syslog, which may not exist.
    "$SLAPD_BIN" -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/" -d none \
        </dev/null >"$dir/slapd.log" 2>&1 &
    pid=$!

    for ((i = 0; i < 100; i++)); do
        if ! _pid_running "$pid"; then
            wait "$pid" 2>/dev/null || true
            cat "$dir/slapd.log" >&2
            die "slapd exited during startup (log above, config $dir/slapd.conf)"
        fi
        if ldapwhoami -x -H "ldap://127.0.0.1:$port" -D "$LDAP_ADMIN_DN" \
            -w "$password" >/dev/null 2>&1; then
            echo "$pid"
            return 0
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cat "$dir/slapd.log" >&2
    die "slapd did not answer an admin bind on port $port within 10 s (log above)"
}
