# Sourced by the bench scripts: what they share.

# bench_config MODEL NET SUBNET [ROOT [SOURCE]]: lxcf's configuration for a bench in
# $work: an empty hosts file of its own, containers under ROOT (default $work/lxc),
# built from SOURCE (default lxcf's, /), on the isolated network NET (bridge NETbr,
# no forwarding). An empty MODEL keeps lxcf's default. Exports LXCF_CONFIG.
bench_config() {
    : >"$work/hosts"
    {
        if [ -n "$1" ]; then printf '[Model]\nmodel=%s\n' "$1"; fi
        printf '[Paths]\nroot=%s\nhosts=%s\n' "${4:-$work/lxc}" "$work/hosts"
        if [ -n "${5:-}" ]; then printf 'source=%s\n' "$5"; fi
        printf '[Network]\nname=%s\nbridge=%sbr\nsubnet=%s\nforward=none\n' "$2" "$2" "$3"
    } >"$work/lxcf.conf"
    export LXCF_CONFIG="$work/lxcf.conf"
}

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
