#!/usr/bin/env bash
# Builds local stand-ins for the official container images the AppHost asks for, under the very same names and
# tags, for machines that cannot pull them (images/README.md). Each is built FROM a Debian bookworm made here with
# debootstrap (localhost/todoscale-base:bookworm.2, made first when missing) with Debian's own packages; an image
# that is already present is left alone.
#
# Usage: images/build-images.sh [--engine podman|docker] [--vendor DIR] [citus]
#   --engine  the container engine (default: $ASPIRE_CONTAINER_RUNTIME, else podman)
#   --vendor  the vendored upstream recipes and sources (default: ../shared/vendor next to the repository)
#   citus     also build docker.io/citusdata/citus:13.0 (Citus compiled from source, about 2 minutes)
#
# Prints one line per image, "built <tag> in N s" or "<tag> present"; a failed build stops the script with the
# image's name and the end of its build log. Works with bash 3.2.
set -euo pipefail

images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$images_dir/.." && pwd)

# .2: the base's own revision. The first one had no apt configuration (each recipe repeated it); a machine that
# still has it makes this one, so no image is built FROM a base without the updates and security sources.
base_tag=localhost/todoscale-base:bookworm.2
engine=$(printf '%s' "${ASPIRE_CONTAINER_RUNTIME:-podman}" | tr '[:upper:]' '[:lower:]')
vendor="$repo_root/../shared/vendor"
with_citus=false

usage() {
  sed -n '7,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "build-images: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --engine) [ $# -ge 2 ] || die "--engine needs a value (podman or docker)"; engine=$2; shift 2 ;;
    --engine=*) engine=${1#--engine=}; shift ;;
    --vendor) [ $# -ge 2 ] || die "--vendor needs a directory"; vendor=$2; shift 2 ;;
    --vendor=*) vendor=${1#--vendor=}; shift ;;
    citus) with_citus=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

case $engine in
  podman | docker) ;;
  *) die "the engine must be podman or docker (was '$engine')" ;;
esac
command -v "$engine" >/dev/null 2>&1 || die "$engine is not installed"
engine_error=$("$engine" info 2>&1 >/dev/null) || die "$engine does not answer ($engine info): $(printf '%s\n' "$engine_error" | tail -n 1)"
[ -d "$vendor" ] || die "the vendored sources are not at $vendor (--vendor DIR)"
vendor=$(cd "$vendor" && pwd)

# Temporary build contexts and logs, removed on exit (a failed build's log is kept and named).
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/todoscale-images.XXXXXX")
rootfs_dir=""
as_root=""
cleanup() {
  if [ -n "$rootfs_dir" ] && [ -d "$rootfs_dir" ]; then
    $as_root rm -rf "$rootfs_dir" || true
  fi
  rm -rf "$work_dir"
}
trap cleanup EXIT

# --- images: recipe folder, tag, vendored files copied into the context -------------------------------------

image_tag() {
  case $1 in
    postgres) echo docker.io/library/postgres:15.14 ;;
    redis) echo docker.io/library/redis:7.4.6 ;;
    prometheus) echo docker.io/prom/prometheus:v2.55.1 ;;
    alertmanager) echo quay.io/prometheus/alertmanager:v0.25.0 ;;
    postgres-exporter) echo quay.io/prometheuscommunity/postgres-exporter:v0.11.1 ;;
    citus) echo docker.io/citusdata/citus:13.0 ;;
    container-tunnel-base) echo mcr.microsoft.com/azurelinux/base/core:3.0 ;;
    *) die "no such image: $1" ;;
  esac
}

# Paths relative to the vendor directory, one a line.
image_vendor_files() {
  case $1 in
    postgres)
      echo docker-library/postgres-15-bookworm/docker-entrypoint.sh
      echo docker-library/postgres-15-bookworm/docker-ensure-initdb.sh
      ;;
    redis) echo docker-library/redis-7.0-debian/docker-entrypoint.sh ;;
    citus)
      echo citus-13.0.5.tar.gz
      echo citus-docker/001-create-citus-extension.sql
      ;;
  esac
}

image_exists() {
  if [ "$engine" = podman ]; then
    podman image exists "$1" >/dev/null 2>&1
  else
    docker image inspect "$1" >/dev/null 2>&1
  fi
}

# --- the apt mirrors this machine uses ------------------------------------------------------------------------

# The Debian mirror: the first URIs: of debian.sources, else the first deb line of sources.list.
debian_mirror() {
  local mirror=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ } print $i; exit }' /etc/apt/sources.list)
  fi
  echo "${mirror:-http://deb.debian.org/debian}"
}

# The security mirror, when this machine has one configured (the base defaults to deb.debian.org's).
security_mirror() {
  local mirror=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk 'BEGIN { RS = "" }
      /(^|\n)Suites:[^\n]*-security/ {
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) if (lines[i] ~ /^URIs:/) { split(lines[i], f, /[ \t]+/); print f[2]; exit }
      }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) ~ /-security$/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "$mirror"
}

# --- the base image: debootstrap, imported --------------------------------------------------------------------

# apt_like_slim <mirror>: a script, run inside the base's root folder, that sets apt up as debian:bookworm-slim has
# it, once for every image: point releases and security updates too (debootstrap configures bookworm only), and no
# downloaded packages, package caches or translations left in the layers (the slim image's docker-clean files).
apt_like_slim() {
  local security
  security=$(security_mirror)
  cat <<EOF
echo 'deb $1 bookworm-updates main' > etc/apt/sources.list.d/bookworm-updates.list
echo 'deb ${security:-http://deb.debian.org/debian-security} bookworm-security main' > etc/apt/sources.list.d/bookworm-security.list
cat > etc/apt/apt.conf.d/docker-clean <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
echo 'Apt::AutoRemove::SuggestsImportant "false";' > etc/apt/apt.conf.d/docker-autoremove-suggests
echo 'Acquire::Languages "none";' > etc/apt/apt.conf.d/docker-no-languages
EOF
}

make_base() {
  if image_exists "$base_tag"; then
    echo "$base_tag present"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "making $base_tag needs root for debootstrap (run as root or install sudo)"
    as_root=sudo
  fi
  command -v debootstrap >/dev/null 2>&1 || $as_root sh -c 'command -v debootstrap' >/dev/null 2>&1 ||
    die "making $base_tag needs debootstrap (apt-get install debootstrap)"

  local mirror log start status
  mirror=$(debian_mirror)
  log="$work_dir/base.log"
  rootfs_dir="$work_dir/rootfs"
  start=$(date +%s)
  status=0
  $as_root debootstrap --variant=minbase bookworm "$rootfs_dir" "$mirror" >"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || fail "$base_tag" "debootstrap --variant=minbase bookworm $rootfs_dir $mirror" "$status" "$log"
  # Downloaded packages and indexes are dead weight: every recipe runs apt-get update.
  $as_root sh -c 'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' sh "$rootfs_dir"
  apt_like_slim "$mirror" | $as_root sh -c 'cd "$1" && sh -eu' sh "$rootfs_dir" >>"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || fail "$base_tag" "the apt configuration in $rootfs_dir" "$status" "$log"
  {
    $as_root tar -C "$rootfs_dir" -c . |
      "$engine" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "$base_tag"
  } >>"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || fail "$base_tag" "tar -C $rootfs_dir -c . | $engine import - $base_tag" "$status" "$log"
  $as_root rm -rf "$rootfs_dir"
  rootfs_dir=""
  echo "built $base_tag in $(($(date +%s) - start)) s"
}

# fail <tag> <what> <status> <log>: the image, the step, the end of its log; keeps the log.
fail() {
  local kept="${TMPDIR:-/tmp}/todoscale-image-$(echo "$1" | tr '/:' '__').log"
  cp "$4" "$kept" 2>/dev/null || kept=$4
  {
    echo "build-images: $1 failed: $2 exited with $3. The last 40 lines of its log:"
    tail -n 40 "$4" | sed 's/^/  | /'
    echo "build-images: the whole log: $kept"
  } >&2
  exit 1
}

# --- one image ------------------------------------------------------------------------------------------------

build_image() {
  local name=$1 tag context log start status file
  tag=$(image_tag "$name")
  if image_exists "$tag"; then
    echo "$tag present"
    return
  fi
  [ -f "$images_dir/$name/Containerfile" ] || die "$tag: $images_dir/$name/Containerfile is missing"

  context="$work_dir/$name"
  mkdir -p "$context"
  cp -R "$images_dir/$name/." "$context/"
  for file in $(image_vendor_files "$name"); do
    [ -f "$vendor/$file" ] || die "$tag needs $vendor/$file, which is missing"
    cp "$vendor/$file" "$context/"
    chmod u+w "$context/$(basename "$file")"
  done
  # The vendored scripts are executable upstream; keep them so whatever the copy they came from.
  for file in "$context"/*.sh; do
    if [ -f "$file" ]; then chmod 0755 "$file"; fi
  done

  log="$work_dir/$name.log"
  start=$(date +%s)
  status=0
  "$engine" build -t "$tag" -f "$context/Containerfile" "$context" >"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || fail "$tag" "$engine build of images/$name" "$status" "$log"
  echo "built $tag in $(($(date +%s) - start)) s"
  rm -rf "$context" "$log"
}

# container-tunnel-base: what Aspire's DCP builds its container tunnel proxy FROM (Prometheus reaches the services
# on the host through it).
images=(postgres redis prometheus alertmanager postgres-exporter container-tunnel-base)
if [ "$with_citus" = true ]; then
  images+=(citus)
fi

make_base
for name in ${images[@]+"${images[@]}"}; do
  build_image "$name"
done
