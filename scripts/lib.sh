# shellcheck shell=bash
# lib.sh: helpers the service scripts share (postgres.sh, redis.sh, cluster.sh).
# Sourced, not run.

# True when nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1"); }

# A free port on 127.0.0.1, below the kernel's ephemeral range, so no outgoing
# connection (or its TIME_WAIT) holds it when the server binds it.
free_port() {
    local p lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# apt_install WHO PACKAGE...: installs Debian packages (with sudo when not root).
# Debian's server packages start a server of their own on the default port;
# the scripts never use it.
apt_install() {
    local who=$1 sudo=""
    shift
    echo "$who: installing $*" >&2
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
