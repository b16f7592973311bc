#!/usr/bin/env bash
# TodoScale's one entry point.
#
#   ./build.sh run  [AppHost args]   install what is missing, build, start the whole stack (Ctrl+C stops it)
#   ./build.sh test [--at "YYYY-MM-DD hh:mm:ss"] [dotnet test args]
#                                    install what is missing, build, run every test; ends with "N passed, N failed".
#                                    --at: the run (tests, servers, CLIs) on a clock starting then, UTC (libfaketime)
#   ./build.sh bench [--scale tiny|small|medium|large] [--seed N] [--workload all|legacy|split|soak|backup|pooler] [--engine citus]
#                                    install what is missing, build Release, run the benchmarks; writes
#                                    bench/results/<date>-<scale>.md and its plots (legacy: <date>-<scale>-legacy.md;
#                                    --engine citus: one PostgreSQL and Citus side by side, <date>-<scale>-citus.md)
#
# AppHost args, e.g.: --Infra:Mode=process|container|auto   --Infra:Reset=true (wipe process-mode data folders)
#                     --Infra:Database=postgres|citus (citus: a coordinator, its standby and Infra:CitusWorkers workers)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

readonly PG_MAJOR=15
readonly DASHBOARD_URL=${TODOSCALE_DASHBOARD_URL:-http://localhost:18888}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# `with_timeout SECONDS command...`: the command, killed after SECONDS (macOS has no GNU timeout).
with_timeout() {
  local seconds=$1 pid watchdog status=0
  shift
  "$@" &
  pid=$!
  (sleep "$seconds" && kill "$pid" 2>/dev/null) >/dev/null 2>&1 &
  watchdog=$!
  wait "$pid" || status=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  return "$status"
}

# Whether a container engine's server answers (`version` names the server on Docker and Podman alike; Podman's
# `info` has no ServerVersion field, so asking for it missed a working Podman).
engine_answers() {
  local out
  out=$(with_timeout 10 "$1" version --format '{{.Server.Version}}' 2>/dev/null) && [ -n "$out" ]
}

# The engine Aspire's DCP will drive: ASPIRE_CONTAINER_RUNTIME when set, else docker, else a Podman that answers.
container_runtime() {
  if [ -n "${ASPIRE_CONTAINER_RUNTIME:-}" ]; then
    echo "$ASPIRE_CONTAINER_RUNTIME"
  elif ! engine_answers docker && command -v podman >/dev/null && engine_answers podman; then
    echo podman
  else
    echo docker
  fi
}

# The infrastructure mode the AppHost will pick (same rule as TodoScale.AppHost/Infra/InfraOptions.cs).
# Portable to macOS' bash 3.2: no ${var,,}, no GNU timeout.
infra_mode() {
  local mode=${Infra__Mode:-auto} arg
  for arg in "$@"; do
    case "$arg" in --Infra:Mode=*) mode=${arg#--Infra:Mode=} ;; esac
  done
  mode=$(printf '%s' "$mode" | tr '[:upper:]' '[:lower:]')
  if [ "$mode" = auto ]; then
    if engine_answers "$(container_runtime)"; then
      mode=container
    else
      mode=process
    fi
  fi
  echo "$mode"
}

# Container mode needs an engine that answers. Where none does and this is Debian as root (these VMs), install
# Podman and configure it as these machines need (../shared/vendor/README.md: runc and cgroupfs, no default
# ulimits above the VM's open-file limit); elsewhere say what to install.
ensure_container_engine() {
  local runtime
  runtime=$(container_runtime)
  if ! engine_answers "$runtime"; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
      die "container mode needs Docker or Podman running ($runtime does not answer). Start it, or use --Infra:Mode=process."
    fi
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
      say "installing podman (apt)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc uidmap slirp4netns >/dev/null
    fi
    if [ ! -s /etc/containers/containers.conf ]; then
      mkdir -p /etc/containers
      printf '%s\n' '# Written by TodoScale build.sh: runc and cgroupfs (crun refuses these VMs'"'"' hybrid cgroups), and no' \
        '# default ulimits (they exceed the VM'"'"'s hard limit on open files).' \
        '[containers]' 'default_ulimits = []' '' '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' >/etc/containers/containers.conf
    fi
    engine_answers podman || die "podman was installed but does not answer: run 'podman info' to see why."
    runtime=podman
    export ASPIRE_CONTAINER_RUNTIME=podman
  fi
  # Podman's containers find each other by name (the replica its primary, the exporters their servers) through
  # CNI's dnsname plugin, a recommendation of podman that --no-install-recommends leaves out.
  if [ "$runtime" = podman ] && [ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" = cni ] \
    && [ ! -x /usr/lib/cni/dnsname ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing podman's dnsname plugin (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-github-containernetworking-plugin-dnsname >/dev/null
  fi
}

# The images container mode pins. Where the registry cannot be reached (an air-gapped machine, these VMs), build
# local equivalents under the same names from images/ (FROM a debootstrap'd Debian, with Debian's packages and the
# official entrypoints from ../shared/vendor), once: a second run finds them. Grafana cannot be built so (it is not
# in Debian): container mode then runs without it (Infra:Grafana=false) and says so.
ensure_container_images() {
  local runtime
  runtime=$(container_runtime)
  if registry_answers; then
    return 0
  fi
  if ! command -v debootstrap >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing debootstrap (apt): the local images' Debian base"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  say "no container registry answers: building TodoScale's local images (images/README.md; once)"
  ASPIRE_CONTAINER_RUNTIME=$runtime images/build-images.sh --engine "$runtime" ${1+"$@"}
  if ! "$runtime" image inspect docker.io/grafana/grafana:11.6.6 >/dev/null 2>&1; then
    echo "    Grafana's image cannot be had here: container mode runs without it (Infra:Grafana=false)"
    export Infra__Grafana=false
  fi
}

# Whether Docker Hub's registry answers (any HTTP status; curl prints 000 when nothing does).
registry_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 https://registry-1.docker.io/v2/ 2>/dev/null || true)
  [ -n "$code" ] && [ "$code" != 000 ]
}

# Local servers for process mode and the tests: PostgreSQL 15 (primary + replica), Redis, Prometheus (+ promtool),
# Alertmanager (+ amtool).
ensure_local_servers() {
  local missing=()
  [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] || missing+=("postgresql-$PG_MAJOR")
  command -v psql >/dev/null || missing+=("postgresql-client-$PG_MAJOR")
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || missing+=(prometheus-alertmanager) # alert routing (+ amtool)
  command -v pgbackrest >/dev/null || missing+=(pgbackrest) # backups and point-in-time recovery of the primary
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || missing+=(pgbouncer) # the pooler (Infra:Pooler=pgbouncer)
  command -v setpriv >/dev/null || missing+=(util-linux)
  command -v wrk >/dev/null || missing+=(wrk) # the benchmark's HTTP load generator (its tiny run is a test)
  faketime_library >/dev/null || missing+=(faketime) # libfaketime: the tests that cross midnight, and test --at
  [ ${#missing[@]} -eq 0 ] && return 0

  if [ "$(id -u)" -ne 0 ]; then
    die "missing ${missing[*]}. Install them with:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}
then run ./build.sh again."
  fi
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them: install them with your package manager."
  say "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages also enable system-wide services (prometheus on :9090, the exporter on :9187, ...);
  # TodoScale runs its own copies on ports it picks, so the ones this install just enabled are switched off.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    local unit
    for unit in "${missing[@]}"; do
      case "$unit" in postgresql-*|redis-server|prometheus|prometheus-postgres-exporter|prometheus-alertmanager|pgbouncer)
        systemctl disable --now "${unit%%-[0-9]*}" >/dev/null 2>&1 || true ;;
      esac
    done
  fi
}

# A headless browser for the test that loads the API reference (Scalar) as a user's browser would: Debian's
# chromium where apt can install it; elsewhere that test is reported as skipped, with the reason.
ensure_browser() {
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$name" >/dev/null && return 0
  done
  [ -n "${CHROME:-}" ] && [ -x "$CHROME" ] && return 0
  [ -x "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && apt-cache show chromium >/dev/null 2>&1; then
    say "installing chromium (apt): the API reference test's headless browser"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null && return 0
  fi
  echo "    no Chromium or Chrome here: the API reference test will be reported as skipped (install chromium, or set CHROME)"
}

# The Citus extension for PostgreSQL $PG_MAJOR (the tests that need a Citus cluster, and --Infra:Database=citus).
# Installed once: from Citus' own packages where apt has them (the repository at install.citusdata.com), else built
# from the source archive named by CITUS_SOURCE (default: the one kept beside this checkout in ../shared/vendor).
# Without either, the Citus tests are reported as skipped, with this reason.
readonly CITUS_PACKAGE="postgresql-$PG_MAJOR-citus-13.0"
citus_installed() {
  [ -e "/usr/lib/postgresql/$PG_MAJOR/lib/citus.so" ] && [ -e "/usr/share/postgresql/$PG_MAJOR/extension/citus.control" ]
}

ensure_citus() {
  citus_installed && return 0
  local source=${CITUS_SOURCE:-}
  if [ -z "$source" ]; then
    local vendored
    for vendored in ../shared/vendor/citus-13.0.*.tar.gz; do [ -e "$vendored" ] && source=$vendored; done
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "    Citus is not installed: the Citus tests will be skipped. To install it (once), as root:"
    echo "      sudo apt-get install $CITUS_PACKAGE   (with Citus' apt repository), or CITUS_SOURCE=<citus-13.0.x.tar.gz> sudo ./build.sh test"
    return 0
  fi
  if command -v apt-cache >/dev/null && apt-cache show "$CITUS_PACKAGE" >/dev/null 2>&1; then
    say "installing Citus ($CITUS_PACKAGE, apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$CITUS_PACKAGE" >/dev/null
    return 0
  fi
  if [ -z "$source" ]; then
    echo "    Citus is not installed and no package or source archive is at hand: the Citus tests will be skipped."
    echo "    Set CITUS_SOURCE to a citus-13.0.x source archive (github.com/citusdata/citus, tag v13.0.5) to build it."
    return 0
  fi
  [ -f "$source" ] || die "CITUS_SOURCE=$source: no such file"
  local deps=("postgresql-server-dev-$PG_MAJOR" libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev
              libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev make gcc) missing=() dep
  for dep in "${deps[@]}"; do dpkg -s "$dep" >/dev/null 2>&1 || missing+=("$dep"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Citus' build dependencies: ${missing[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  say "building Citus from $source (once; about 1.5 min on 2 cores)"
  local work status=0
  work=$(mktemp -d "${TMPDIR:-/tmp}/todoscale-citus.XXXXXX")
  tar -xzf "$source" -C "$work" --strip-components=1
  (cd "$work" && ./configure --quiet PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >"$work/build.log" 2>&1 \
    && make -j"$(nproc)" >>"$work/build.log" 2>&1 && make install >>"$work/build.log" 2>&1) || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 30 "$work/build.log" >&2
    die "building Citus from $source failed (the log's end is above; the whole log: $work/build.log)"
  fi
  rm -rf "$work"
  citus_installed || die "Citus was built from $source but citus.so is not in /usr/lib/postgresql/$PG_MAJOR/lib"
}

# libfaketime's multi-threaded build (Debian: package libfaketime, pulled in by faketime).
faketime_library() {
  local lib
  for lib in /usr/lib/*-linux-gnu/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
    [ -e "$lib" ] && { echo "$lib"; return 0; }
  done
  return 1
}

ensure_dotnet() {
  command -v dotnet >/dev/null || die "the .NET 10 SDK is not on PATH: install it from https://dot.net (dotnet-sdk-10.0)."
}

build() {
  say "restore + build"
  dotnet build TodoScale.sln -c "${CONFIGURATION:-Debug}" -nologo -v quiet -clp:NoSummary \
    || die "the build failed (see the errors above)"
}

cmd_run() {
  ensure_dotnet
  local mode
  mode=$(infra_mode "$@")
  local citus=false
  case " $* ${Infra__Database:-} " in *"--Infra:Database=citus"*|*" citus "*) citus=true ;; esac
  if [ "$mode" = process ]; then
    ensure_local_servers
    [ "$citus" = true ] && ensure_citus
  fi
  if [ "$mode" = container ]; then
    ensure_container_engine
    ASPIRE_CONTAINER_RUNTIME=$(container_runtime)
    export ASPIRE_CONTAINER_RUNTIME # the engine DCP drives: the one that answered
    if [ "$citus" = true ]; then
      ensure_container_images citus # every PostgreSQL container runs citusdata/citus
    else
      ensure_container_images
    fi
  fi
  build

  # A plain-http, headless dashboard: works with no developer certificate and no browser.
  export ASPNETCORE_URLS=${ASPNETCORE_URLS:-$DASHBOARD_URL}
  export ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL=${ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL:-http://localhost:18889}
  export ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL=${ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL:-http://localhost:18890}
  export ASPIRE_ALLOW_UNSECURED_TRANSPORT=true
  export DOTNET_ENVIRONMENT=${DOTNET_ENVIRONMENT:-Development}
  export ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Development}

  say "starting TodoScale ($mode mode). The AppHost prints:"
  cat <<EOF
    - the Aspire dashboard:  $ASPNETCORE_URLS  (open the "Login to the dashboard" link below)
    - "TodoScale api is ready at ..."         the API (http://localhost:5180)
    - "TodoScale prometheus is ready at ..."  Prometheus
    - "TodoScale cache is ready at ..."       Redis (rediss:// where Aspire serves it over TLS)
$( [ "$mode" = container ] && [ "${Infra__Grafana:-true}" != false ] && echo '    - "TodoScale grafana is ready at ..."     Grafana' )
  Stop with Ctrl+C.
EOF
  # --no-launch-profile: the settings above (each overridable), not launchSettings.json's, which are for
  # `dotnet run --project TodoScale.AppHost [--launch-profile http]` and IDEs.
  exec dotnet run --project TodoScale.AppHost -c "${CONFIGURATION:-Debug}" --no-build --no-launch-profile -- "$@"
}

cmd_test() {
  local at=""
  if [ "${1:-}" = --at ]; then
    [ $# -ge 2 ] || die "--at needs a time, e.g. --at \"2027-12-31 23:59:30\" (UTC)"
    at=$2
    shift 2
  fi
  ensure_dotnet
  ensure_local_servers # the tests start real servers in process mode, whatever engine is present
  ensure_citus
  ensure_browser
  # Container mode's tests need an engine and the pinned images: installed (Podman on Debian as root) and built
  # (images/, where no registry answers) here, once. Where neither can be had they are skipped, with the reason.
  # (The tests find the engine themselves and hand it to their container-mode AppHosts only.)
  if ! (ensure_container_engine && ensure_container_images citus); then
    echo "    no container engine here: the container-mode tests will be reported as skipped"
  fi
  build

  local results
  results=$(mktemp -d "${TMPDIR:-/tmp}/todoscale-test-results.XXXXXX")
  local clock=()
  if [ -n "$at" ]; then
    # The whole run on one clock that starts at $at and runs on: libfaketime preloaded into dotnet test and so into
    # every test host, PostgreSQL server and CLI it starts, all reading one offset in whole seconds from real time.
    local target lib
    target=$(date -u -d "$at UTC" +%s 2>/dev/null) || die "--at '$at' is not a time date(1) reads, e.g. \"2027-12-31 23:59:30\""
    lib=$(faketime_library) || die "--at needs libfaketime (apt-get install faketime)"
    printf '%+d\n' $((target - $(date -u +%s))) >"$results/faketime"
    chmod a+rx "$results" && chmod a+r "$results/faketime" # the servers run as the postgres user
    clock=(env LD_PRELOAD="$lib" FAKETIME_TIMESTAMP_FILE="$results/faketime")
    say "the test run's clock starts at $(date -u -d "@$target" '+%Y-%m-%d %H:%M:%S') UTC"
    # Left out on a faked clock, and the line below says so: the tests that start the AppHost (Aspire's dcp, a Go
    # program, reads the real time and every call to it times out) and those that need PostgreSQL's own timers
    # (under libfaketime statement_timeout and lock_timeout never fire).
    local args=() arg filter="" next=0
    for arg in "$@"; do
      if [ "$next" = 1 ]; then filter=$arg; next=0; continue; fi
      case "$arg" in
        --filter) next=1 ;;
        --filter=*) filter=${arg#--filter=} ;;
        *) args+=("$arg") ;;
      esac
    done
    set -- ${args[@]+"${args[@]}"} --filter "${filter:+($filter)&}Needs!=AppHost&Needs!=ServerTimers"
    echo "    left out on a faked clock: the tests that start the AppHost (trait Needs=AppHost) and those that need"
    echo "    PostgreSQL's statement_timeout or lock_timeout to fire (Needs=ServerTimers); run them without --at"
  fi
  say "dotnet test"
  local status=0
  ${clock[@]+"${clock[@]}"} dotnet test TodoScale.sln -c "${CONFIGURATION:-Debug}" --no-build -nologo \
    --results-directory "$results" --logger "trx" --logger "console;verbosity=normal" \
    --blame-hang-timeout 10m "$@" || status=$?

  # Sum the counters of every test project's .trx into the one line CI reads.
  local passed=0 failed=0 skipped=0 files=0 trx counters
  for trx in "$results"/*.trx; do
    [ -e "$trx" ] || continue
    files=$((files + 1))
    counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
    passed=$((passed + $(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")))
    failed=$((failed + $(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters") + $(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$counters")))
    skipped=$((skipped + $(sed -n 's/.* notExecuted="\([0-9]*\)".*/\1/p' <<<"$counters")))
  done
  # Name every failed test and the first line of its message last, where a truncated CI log still shows them.
  if [ "$files" -gt 0 ] && grep -q 'outcome="Failed"' "$results"/*.trx; then
    grep -ho '<UnitTestResult [^>]*outcome="Failed"' "$results"/*.trx | sed 's/.*testName="\([^"]*\)".*/FAILED \1/'
    { command -v python3 >/dev/null && python3 - "$results"/*.trx; } <<'PY' || true
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for path in sys.argv[1:]:
    for r in ET.parse(path).getroot().iterfind(".//t:UnitTestResult[@outcome='Failed']", ns):
        msg = r.findtext(".//t:Message", default="", namespaces=ns).strip().splitlines()
        # The first lines: an assertion's Expected/Actual follow its first line.
        print(f"  {r.get('testName')}: {' | '.join(line.strip() for line in msg[:5])[:600]}")
PY
  fi
  rm -rf "$results"

  if [ "$files" -eq 0 ]; then
    echo "0 passed, 1 failed"
    die "no test results were written (dotnet test exited $status)"
  fi
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # the run itself failed (crash, hang, build error) though no single test reported it
  fi
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

cmd_bench() {
  ensure_dotnet
  ensure_local_servers
  case " $* " in *" --engine citus "*|*" --engine=citus "*) ensure_citus ;; esac
  # Measured in Release: the API and archiver the AppHost starts run the configuration it was built in.
  CONFIGURATION=Release build
  say "TodoScale.Bench $*"
  dotnet bench/TodoScale.Bench/bin/Release/net10.0/TodoScale.Bench.dll "$@"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
