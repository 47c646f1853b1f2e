#!/usr/bin/env bash
# A local CA and certificates for TLS tests and demos (`make certs`): ca.pem, and
# mesh.pem/mesh-key.pem for the services (server and client use: mutual TLS between them),
# valid for localhost, 127.0.0.1, ::1 and the service names of the compose file and charts.
# Never use these for production: the CA key sits beside them.
set -euo pipefail
out="${1:-certs}"
days="${CERT_DAYS:-30}"
mkdir -p "$out"
chmod 700 "$out"
cd "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=CodeIntel local CA" -keyout ca-key.pem -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
sans="DNS:localhost,IP:127.0.0.1,IP:::1"
for s in vector-svc lexical-svc hydrate-svc answer-svc; do
  sans="$sans,DNS:$s,DNS:$s-headless,DNS:*.$s-headless"
done
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=codeintel-mesh" \
  -keyout mesh-key.pem -out mesh.csr 2>/dev/null
cat > mesh.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
openssl x509 -req -in mesh.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
  -extfile mesh.ext -out mesh.pem 2>/dev/null
rm -f mesh.csr mesh.ext ca.srl
echo "wrote $(pwd)/{ca.pem,mesh.pem,mesh-key.pem} (valid $days days)"
