#!/usr/bin/env bash
# Installs the Debian packages keel needs. Idempotent; quiet when everything is present.
# Usage: scripts/deps.sh [build|test|bench|all]   (default: test)
set -euo pipefail

build_pkgs=(
  g++ cmake ninja-build ccache pkg-config      # toolchain
  libboost1.81-dev libssl-dev                  # Asio/Beast event loops, TCP, TLS, HTTP
  libsodium-dev                                # Argon2id password hashes (users and access rules)
  librocksdb-dev                               # persistent storage engine
  prometheus-cpp-dev                           # metrics registry + text exposition
  libspdlog-dev libfmt-dev                     # logs, formatting (<format> is missing in g++ 12)
  libtomlplusplus-dev nlohmann-json3-dev       # keel.toml, JSON
  libyaml-cpp-dev                              # SDK: YAML pipeline descriptions (optional in CMake)
  libcli11-dev                                 # command line
  libxxhash-dev libzstd-dev                    # hashing, compression
  libgtest-dev libgmock-dev librapidcheck-dev libbenchmark-dev  # tests, property tests, benches
)
test_pkgs=(
  redis-tools libhiredis-dev python3-redis     # real clients for integration tests
  clang-16 libclang-rt-16-dev                  # libFuzzer (clang 16: the oldest whose concepts
                                               # support lets libstdc++ 12 enable std::expected)
  curl procps redis-server                    # redis-server: the reference for reply parity tests
  openssl                                      # test_tls: openssl x509 / verify read the issued certificates
  prometheus                                   # promtool checks the /metrics exposition and the alert rules
  chromium                                     # test_ui: the admin page in a real (headless) browser
)
bench_pkgs=(
  redis-server                                 # the peer keel is compared with (also a test dep)
  etcd-server wrk                              # bench/meta: 3-node etcd vs keel metadata, HTTP load
  nginx                                        # bench/gateway: the reverse proxy keel's gateway is compared with
)

what=${1:-test}
case "$what" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench|all) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "deps.sh: unknown group '$what' (allowed: build, test, bench, all)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
