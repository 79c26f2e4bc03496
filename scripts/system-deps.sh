#!/usr/bin/env bash
# Installs the Debian packages Signet's local runtime and tests use, only when missing:
# SoftHSM2 and OpenSC (pkcs11-tool) for the HSM, Java 17 + Maven for the Kafka broker,
# PostgreSQL for the repository tests, OpenSSL for verifying signatures, promtool (from
# Debian's prometheus package) for checking the chart's alerting and recording rules.
set -euo pipefail
need=()
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v openssl >/dev/null || need+=(openssl)
command -v promtool >/dev/null || need+=(prometheus)
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
if ((${#need[@]})); then
  echo "installing system packages: ${need[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
