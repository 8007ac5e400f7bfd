#!/usr/bin/env bash
# Make the TLS material of the compose Kafka (docs/production.md, "Security"):
#   run/kafka-ca/ca.key      the CA's key: stays here, 0600, never mounted
#   run/kafka-tls/ca.pem     the CA certificate: clients verify the broker with it
#                            (RESONATE_KAFKA_SSL_CAFILE; the workers get it mounted)
#   run/kafka-tls/kafka.p12  the broker's key and certificate (PKCS12) for the names
#                            `kafka` (compose network) and `localhost` / 127.0.0.1 (the host)
#   run/kafka-tls/kafka.p12.pass  its random password (the image reads it from a file)
# Idempotent: existing files are kept; delete run/kafka-tls to renew the broker's pair.
# A CA of your own organisation can replace the generated one: put its ca.pem and a
# kafka.p12 (+ .pass) it signed in run/kafka-tls instead.
# OUT=DIR writes DIR/kafka-ca and DIR/kafka-tls instead of run/ (the SASL_SSL test uses a
# temporary folder).
set -euo pipefail
cd "$(dirname "$0")/../../.."
DAYS=${DAYS:-825}
OUT=${OUT:-run}
umask 077
mkdir -p "$OUT/kafka-ca" "$OUT/kafka-tls"
ca=$OUT/kafka-ca tls=$OUT/kafka-tls
if [ ! -f "$ca/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
    -subj "/CN=resonate kafka CA" -keyout "$ca/ca.key" -out "$ca/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi
cp "$ca/ca.pem" "$tls/ca.pem"
if [ ! -f "$tls/kafka.p12" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kafka" \
    -keyout "$work/kafka.key" -out "$work/kafka.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1" \
    "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" > "$work/ext.cnf"
  openssl x509 -req -in "$work/kafka.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
    -CAcreateserial -CAserial "$ca/ca.srl" -days "$DAYS" -extfile "$work/ext.cnf" \
    -out "$work/kafka.pem" 2>/dev/null
  openssl rand -hex 24 > "$tls/kafka.p12.pass"
  openssl pkcs12 -export -in "$work/kafka.pem" -inkey "$work/kafka.key" -name kafka \
    -passout "file:$tls/kafka.p12.pass" -out "$tls/kafka.p12"
fi
# The broker runs as the image's `appuser` (uid 1000); the CA certificate is public.
chmod 0755 "$tls" && chmod 0644 "$tls/ca.pem" && chmod 0640 "$tls/kafka.p12" "$tls/kafka.p12.pass"
if [ "$(id -u)" = 0 ]; then chown 1000 "$tls/kafka.p12" "$tls/kafka.p12.pass"; fi
echo "Kafka TLS material in $tls (CA key in $ca)"
