#!/usr/bin/env bash
# Entry point of the compose `kafka` service: the image's own start-up, then the SCRAM
# credential of the one client user (workers, the topics job, producers outside compose).
#
# Why here: SCRAM users live in the cluster metadata, and the image's storage-format step
# cannot add them; they are set through the INTERNAL listener, which listens on this
# container's loopback only. Setting them on every start makes a password change in .env
# plus `docker compose up -d kafka` a rotation. Health (docker-compose.yml) waits for
# /tmp/scram-ready, so nothing connects before the user exists.
set -euo pipefail
: "${SCRAM_USER:?}" "${SCRAM_PASSWORD:?}"
rm -f /tmp/scram-ready
/etc/kafka/docker/run &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null; wait "$broker"' TERM INT
until /opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server 127.0.0.1:9092 >/dev/null 2>&1; do
  kill -0 "$broker" 2>/dev/null || exit 1  # the broker died during start-up
  sleep 2
done
/opt/kafka/bin/kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --alter \
  --entity-type users --entity-name "$SCRAM_USER" \
  --add-config "SCRAM-SHA-512=[iterations=8192,password=$SCRAM_PASSWORD]" >/dev/null
touch /tmp/scram-ready
echo "SCRAM-SHA-512 credential of $SCRAM_USER set"
wait "$broker"
