#!/usr/bin/env bash
# Deploys secmon with Docker Compose: secrets, certificates, the port plan
# check, `docker compose up`, then waits until secmon is healthy.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/deploy.sh [OPTIONS] development|production

Runs secmon, Postgres, Redis, Prometheus and Grafana with Docker Compose
(docker/docker-compose.yml; production adds docker/docker-compose.prod.yml),
on the networks of docs/NETWORK_TOPOLOGY.md. In order:

  1. checks for docker, Docker Compose 2.24.4 or newer (the `docker compose`
     plugin or a standalone `docker-compose`) and openssl;
  2. copies docker/.env.example to docker/.env if there is none;
  3. creates each missing secret in docker/secrets/ (random JWT secret,
     metrics token, admin passwords, Postgres and Redis passwords and the
     URLs holding them; docker/secrets/README.md lists them), never
     replacing one that exists;
  4. makes a CA and a server certificate with scripts/generate-certs.sh into
     docker/secrets/tls/ for "secmon" and SECMON_TLS_NAMES from docker/.env
     (the stack speaks TLS in both environments), kept when present;
  5. gives the secret files group 10001 and mode 0640, so the containers
     (uid/gid 10001, or group_add 10001) read them and nobody else does:
     this needs root;
  6. checks the port plan with `secmon validate-ports ENV` and the secrets
     with `secmon config check --environment ENV`, with the container's
     environment, when a secmon binary is at hand (on PATH, or built in
     target/); skipped with a message otherwise;
  7. docker compose ... up -d --build, then waits up to 5 minutes for
     secmon's health check, and prints the URLs and where the passwords are.

Options:
  -n, --dry-run   change nothing: say what would be created, run the port
                  check and `docker compose ... config`, print the up command
  --vault         also start the bundled Vault (compose profile "vault";
                  initialise and unseal it afterwards, see docker/.env.example)
  --no-build      use the image SECMON_IMAGE as it is (no `--build`)
  -h, --help      this text

Examples:
  sudo scripts/deploy.sh development
  scripts/deploy.sh --dry-run production
EOF
}

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '== %s\n' "$*"; }

environment=
dry_run=
vault=
build=--build
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--dry-run) dry_run=1; shift ;;
        --vault) vault=1; shift ;;
        --no-build) build=; shift ;;
        -h|--help) usage; exit 0 ;;
        development|production)
            [ -z "$environment" ] || die "give one environment, not '$environment' and '$1'"
            environment=$1; shift ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) die "unknown environment '$1': development or production (see --help)" ;;
    esac
done
[ -n "$environment" ] || die "say which environment: development or production (see --help)"

cd "$(dirname "$0")/.."
root=$PWD
docker_dir=$root/docker
secrets=$docker_dir/secrets
tls=$secrets/tls

# -- 1. prerequisites --------------------------------------------------------

command -v docker >/dev/null \
    || die "docker is missing: install Docker Engine (https://docs.docker.com/engine/install/)"
command -v openssl >/dev/null \
    || die "openssl is missing: install it (Debian/Ubuntu: apt install openssl; RHEL/Fedora: dnf install openssl)"
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
elif [ -n "$dry_run" ] && [ -x .tools/compose-check/compose ]; then
    # A dry run only validates: the Compose binary scripts/check-compose.sh installed will do.
    compose=("$PWD/.tools/compose-check/compose")
else
    die "Docker Compose is missing: install the compose plugin (Debian/Ubuntu: apt install docker-compose-plugin from Docker's repository)"
fi
compose_version=$("${compose[@]}" version --short 2>/dev/null | sed 's/^v//')
# !override in docker-compose.prod.yml needs 2.24.4; Compose v1 (1.29) reads
# neither it nor parts of the current Compose specification.
if ! printf '%s\n%s\n' 2.24.4 "$compose_version" | sort -V -C; then
    die "${compose[*]} is version '$compose_version': Docker Compose 2.24.4 or newer is needed"
fi

files=(-f "$docker_dir/docker-compose.yml")
[ "$environment" = development ] || files+=(-f "$docker_dir/docker-compose.prod.yml")
[ -z "$vault" ] || files+=(--profile vault)
dc() { "${compose[@]}" "${files[@]}" "$@"; }

# -- 2. docker/.env -----------------------------------------------------------

if [ ! -f "$docker_dir/.env" ]; then
    if [ -n "$dry_run" ]; then
        say "would copy docker/.env.example to docker/.env (compose reads docker/.env; the example's values are used meanwhile)"
        env_file=$docker_dir/.env.example
    else
        cp "$docker_dir/.env.example" "$docker_dir/.env"
        say "wrote docker/.env from docker/.env.example: review it"
        env_file=$docker_dir/.env
    fi
else
    env_file=$docker_dir/.env
fi

# A value from the env file (KEY=value, quotes removed); no shell evaluation.
env_value() {
    sed -n "s/^$1=//p" "$env_file" | tail -1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}
tls_names=$(env_value SECMON_TLS_NAMES)
publish=$(env_value SECMON_PUBLISH_ADDRESS)
syslog_publish=$(env_value SYSLOG_PUBLISH_ADDRESS)
case "$environment:$syslog_publish" in
    production:0.0.0.0|production:::|production:\[::\])
        die "SYSLOG_PUBLISH_ADDRESS=$syslog_publish publishes plain syslog on every interface: the port plan keeps it internal (loopback or an internal interface's address)" ;;
esac

# -- 3. secrets -----------------------------------------------------------------

random_b64() { openssl rand -base64 "$1" | tr -d '\n'; }
random_hex() { openssl rand -hex "$1"; }

# make_secret NAME VALUE-COMMAND...: writes docker/secrets/NAME unless present.
make_secret() {
    local name=$1; shift
    if [ -e "$secrets/$name" ]; then
        say "kept docker/secrets/$name"
    elif [ -n "$dry_run" ]; then
        say "would create docker/secrets/$name"
    else
        local value
        value=$("$@") || die "could not generate $name"
        (umask 077 && printf '%s' "$value" >"$secrets/$name.tmp" && mv "$secrets/$name.tmp" "$secrets/$name")
        say "created docker/secrets/$name"
    fi
}

if [ -z "$dry_run" ]; then
    mkdir -p "$secrets" && chmod 0700 "$secrets"
fi
make_secret jwt_secret random_b64 48
make_secret metrics_token random_hex 32
make_secret admin_password random_b64 18
make_secret grafana_admin_password random_b64 18
make_secret postgres_password random_hex 24
make_secret redis_password random_hex 24
# The URLs embed the passwords just made (or kept): hex, so URL-safe.
database_url() { printf 'postgres://secmon:%s@postgres:5432/secmon?sslmode=disable' "$(cat "$secrets/postgres_password")"; }
redis_url() { printf 'redis://:%s@redis:6379' "$(cat "$secrets/redis_password")"; }
make_secret database_url database_url
make_secret redis_url redis_url
make_secret vault_token true
make_secret database_read_url true
make_secret nats_url true
make_secret aws_access_key_id true
make_secret aws_secret_access_key true
make_secret fleet_api_key true

# -- 4. certificates --------------------------------------------------------------

# SECMON_TLS_NAMES is a space-separated list.
read -r -a names <<<"secmon ${tls_names:-localhost 127.0.0.1}"
if [ -n "$dry_run" ]; then
    if [ -e "$tls/server.crt" ]; then
        say "would keep docker/secrets/tls/server.crt"
    else
        say "would run: scripts/generate-certs.sh --out docker/secrets/tls ${names[*]}"
    fi
else
    say "certificates (scripts/generate-certs.sh --out docker/secrets/tls ${names[*]})"
    scripts/generate-certs.sh --out "$tls" "${names[@]}"
fi

# -- 5. permissions -------------------------------------------------------------

# Every file a container reads: group 10001, 0640. ca.key is read by none.
readable=(jwt_secret metrics_token admin_password grafana_admin_password postgres_password
          redis_password database_url database_read_url redis_url vault_token
          nats_url aws_access_key_id aws_secret_access_key fleet_api_key
          tls/server.key tls/server.crt tls/ca.crt)
if [ -n "$dry_run" ]; then
    say "would give docker/secrets/{${readable[*]}} group 10001, mode 0640 (as root)"
else
    wrong=()
    for f in "${readable[@]}"; do
        [ "$(stat -c '%g %a' "$secrets/$f")" = "10001 640" ] || wrong+=("$secrets/$f")
    done
    if [ ${#wrong[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            chgrp 10001 "${wrong[@]}" && chmod 0640 "${wrong[@]}"
            say "gave ${#wrong[@]} secret files group 10001, mode 0640"
        else
            die "the containers read the secrets as group 10001: run as root, or once:
  sudo chgrp 10001 ${wrong[*]}
  sudo chmod 0640 ${wrong[*]}"
        fi
    fi
fi

# -- 6. port plan ---------------------------------------------------------------

# The environment the container runs with (docker/Dockerfile, compose).
secmon_bin=
if command -v secmon >/dev/null; then
    secmon_bin=secmon
else
    for candidate in target/release/secmon target/debug/secmon; do
        if [ -x "$candidate" ]; then secmon_bin=$candidate; break; fi
    done
fi
if [ -z "$secmon_bin" ]; then
    say "port plan: skipped, no secmon binary here (install one or build it: cargo build --release; then scripts/validate-ports.sh $environment)"
else
    container_env=(ENVIRONMENT="$environment" BIND_ADDRESS=0.0.0.0 TLS_ENABLED=true
                   SYSLOG_UDP_PORT=5514 SYSLOG_TCP_PORT=5601 SYSLOG_TLS_PORT=6514)
    if [ "$environment" = production ]; then
        # docker-compose.prod.yml: syslog TLS takes client certificates of the site's CA.
        container_env+=(SYSLOG_TLS_CLIENT_CA_PATH="$tls/ca.crt")
    fi
    if [ -r "$secrets/metrics_token" ]; then
        container_env+=(METRICS_TOKEN_FILE="$secrets/metrics_token")
    else
        container_env+=(METRICS_TOKEN=placeholder-for-the-check) # dry run before the secret exists
    fi
    say "port plan: $secmon_bin validate-ports $environment (with the container's ports and TLS)"
    # What scripts/validate-ports.sh runs, with the binary found here.
    env "${container_env[@]}" "$secmon_bin" validate-ports --config config "$environment" \
        || die "the port plan fails for $environment: fix config/ports.yaml (docs/PORT_MANAGEMENT.md)"
    if [ -z "$dry_run" ]; then
        # The container's start-up checks, on the host's copies of its files:
        # certificate and key load, JWT secret long enough, every secret readable.
        say "configuration: $secmon_bin config check --environment $environment (the container's secrets)"
        env "${container_env[@]}" TLS_CERT_PATH="$tls/server.crt" TLS_KEY_PATH="$tls/server.key" \
            JWT_SECRET_FILE="$secrets/jwt_secret" SECMON_ADMIN_PASSWORD_FILE="$secrets/admin_password" \
            DATABASE_URL_FILE="$secrets/database_url" REDIS_URL_FILE="$secrets/redis_url" \
            "$secmon_bin" config check --config config --environment "$environment" >/dev/null \
            || die "secmon would refuse to start with these secrets (its message is above)"
    fi
fi

# -- 7. compose -------------------------------------------------------------------

say "${compose[*]} ${files[*]} config"
dc config --quiet || die "the compose files do not validate (scripts/check-compose.sh says more)"

if [ -n "$dry_run" ]; then
    say "would run: ${compose[*]} ${files[*]} up -d $build"
    say "dry run: nothing changed"
    exit 0
fi

say "starting: ${compose[*]} ${files[*]} up -d $build"
# shellcheck disable=SC2086 # $build is one word or none
dc up -d $build

say "waiting for secmon to be healthy (up to 5 minutes)"
deadline=$((SECONDS + 300))
status=
while [ $SECONDS -lt $deadline ]; do
    id=$(dc ps -q secmon) || die "${compose[*]} ps failed: is the Docker engine running?"
    status=$([ -z "$id" ] || docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
    [ "$status" = healthy ] && break
    sleep 3
done
if [ "$status" != healthy ]; then
    dc ps
    dc logs --tail 50 secmon
    die "secmon is not healthy after 5 minutes (status: ${status:-not running}); its last log lines are above"
fi

host=${publish:-0.0.0.0}
[[ $host =~ ^(0\.0\.0\.0|::)$ ]] && host=localhost
say "secmon is up ($environment)"
cat <<EOF
  GraphQL, ingest, _bulk   https://$host:8000/graphql        (CA: docker/secrets/tls/ca.crt)
  subscriptions            wss://$host:8001/ws
  syslog TLS               $host:6514/tcp
EOF
if [ "$environment" = production ]; then
    cat <<EOF
  syslog plain             ${syslog_publish:-127.0.0.1}:514/udp, ${syslog_publish:-127.0.0.1}:601/tcp
  metrics, health          not published: Prometheus reads them on the monitoring network
EOF
else
    cat <<EOF
  syslog plain             127.0.0.1:5514/udp, 127.0.0.1:5601/tcp
  metrics                  https://127.0.0.1:9090/metrics    (bearer: docker/secrets/metrics_token)
  health                   http://127.0.0.1:8080/health, /ready
EOF
fi
cat <<EOF
  Grafana                  http://$(env_value GRAFANA_PUBLISH_ADDRESS | sed 's/^$/127.0.0.1/'):3000   (user admin, password in docker/secrets/grafana_admin_password)
  secmon user admin        password in docker/secrets/admin_password (set at the first start only)
  log in, API keys:         docs/API.md (clients trust docker/secrets/tls/ca.crt)
  stop:    ${compose[*]} ${files[*]} down     (volumes are kept; add -v to delete the data)
EOF
