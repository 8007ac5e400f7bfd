#!/usr/bin/env bash
# Debian packages the tests need (idempotent; run as root, or with sudo available):
#   prometheus  -> /usr/bin/promtool (rule checks and rule unit tests) and /usr/bin/prometheus
#                  (the real server scraping the embedded stack in an integration test).
#   chromium, chromium-driver -> the inspector page's browser test (Selenium).
#   openjdk-17-jre-headless, maven -> the embedded Apache Kafka broker (Java 17) and the
#                  fetch of its jars from Maven Central (infra/kafka/pom.xml).
#   kcat        -> the client-matrix test (librdkafka's command-line client).
# Installs only what is missing, and never starts the packaged daemon: tests start their
# own Prometheus on loopback.
set -euo pipefail
# Images that only run workers (Dockerfile) need none of them (their Kafka is compose's).
[ "${RESONATE_SKIP_SYSTEM_PACKAGES:-0}" = 1 ] && exit 0
missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# Kafka 4's broker needs Java 17 or newer; an older or missing java gets Debian's 17.
java_major=$( (java -version 2>&1 || true) | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jre-headless)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing Debian packages: ${missing[*]}"
# policy-rc.d exit 101 = "don't start services from maintainer scripts" (removed after).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" -eq 0 ] || $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
