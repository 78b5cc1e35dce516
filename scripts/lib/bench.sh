# shellcheck shell=bash
# What the benchmark scripts share (sourced, not run on its own).
#
#   bench_config DIR
#       the shipped config/*.yaml copied into DIR with the API's rate limits
#       out of the way (a load generator asks faster than an analyst); run
#       from the repository's root. Exits 1 when config.yaml no longer has
#       the limits where this expects them.
#
#   NODE_TUNABLES
#       the shipped systemd unit's GLIBC_TUNABLES (the allocator's
#       thresholds), or GLIBC_TUNABLES when set: the scripts start the node
#       with it, so it is measured as it runs in production (the peers keep
#       their own defaults).

# shellcheck disable=SC2034 # used by the scripts that source this file
NODE_TUNABLES=${GLIBC_TUNABLES-$(sed -n 's/^Environment=GLIBC_TUNABLES=//p' systemd/secmon.service)}

bench_config() {
    local dir=$1
    mkdir -p "$dir"
    cp config/*.yaml "$dir/"
    sed -i 's/per_ip_per_second: 100$/per_ip_per_second: 100000/; s/per_principal_per_second: 100$/per_principal_per_second: 100000/' \
        "$dir/config.yaml"
    grep -q 'per_principal_per_second: 100000' "$dir/config.yaml" ||
        { echo "cannot raise the rate limits in config.yaml" >&2; exit 1; }
}
