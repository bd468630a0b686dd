# shellcheck shell=bash
# Shared shell helpers for the Piggyback scripts: source it, do not run it.

# Print a line on stderr, prefixed with the calling script's name.
log() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

# Print a message on stderr and exit 1.
die() {
    log "$*"
    exit 1
}

# The root of the repository this file belongs to.
repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

# ensure_packages PKG... : install the Debian packages that are missing.
# Runs `apt-get update` once (per process) before the first install. Before
# installing a package that would start a system service (apache2, lighttpd)
# it writes /usr/sbin/policy-rc.d exiting 101 so that no daemon is started on
# port 80, and removes it afterwards only if it created it.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        # One list for every script (scripts/packages): scripts/test installs it first,
        # so a package missing from it would be a step a fresh machine fails.
        if ! grep -qx "$pkg" "$(repo_root)/scripts/packages" && [ "$pkg" != nodejs ] && [ "$pkg" != npm ]; then
            die "package $pkg is not in scripts/packages: add it there"
        fi
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]} (run as root, or install them: apt-get install ${missing[*]})"
    fi
    log "installing Debian packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# written by piggyback scripts/lib.sh: start no service during install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    if [ -z "${PIGGYBACK_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || rc=$?
        export PIGGYBACK_APT_UPDATED=1
    fi
    if [ "$rc" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
    fi
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$policy"
    fi
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc) installing: ${missing[*]}"
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT [SECONDS] : wait until something accepts on 127.0.0.1:PORT.
wait_for_port() {
    local port=$1 seconds=${2:-10} i
    for ((i = 0; i < seconds * 10; i++)); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# run_user: the unprivileged user servers run as when started as root:
# PIGGYBACK_USER (the name the configurations read), default www-data (the
# web servers' user on Debian, scripts/install's default too), else nobody.
run_user() {
    if [ "$(id -u)" -eq 0 ]; then
        if [ -n "${PIGGYBACK_USER:-}" ]; then
            printf '%s\n' "$PIGGYBACK_USER"
        elif id www-data >/dev/null 2>&1; then
            printf 'www-data\n'
        else
            printf 'nobody\n'
        fi
    else
        id -un
    fi
}

# run_group: PIGGYBACK_GROUP, default the group of run_user.
run_group() {
    if [ "$(id -u)" -eq 0 ]; then
        if [ -n "${PIGGYBACK_GROUP:-}" ]; then
            printf '%s\n' "$PIGGYBACK_GROUP"
        else
            id -gn "$(run_user)"
        fi
    else
        id -gn
    fi
}
