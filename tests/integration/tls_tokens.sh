#!/usr/bin/env bash
# Security through the CLI: a server with mTLS and bearer tokens. A
# throwaway PKI (CA, server cert for 127.0.0.1/localhost, client cert, and an
# unrelated CA) is made with the openssl command. Checks: plaintext and
# wrong-CA clients fail, a client without a certificate fails, the right
# certificate works; no token -> UNAUTHENTICATED, read token can read and
# predict but not create (PERMISSION_DENIED), train creates, only admin
# deletes, health needs no token, bench sends the token; and no token ever
# shows up in the CLI's output or the server's log.
source "$(dirname "$0")/lib.sh" "$@"
command -v openssl >/dev/null || { echo "FAIL: no openssl command (scripts/install-deps.sh installs it)" >&2; exit 1; }

PKI=$WORK/pki
mkdir -p "$PKI"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
make_ca() { key "$1"; openssl req -x509 -new -key "$PKI/$1.key" -out "$PKI/$1.pem" -days 2 -subj "/CN=$1"; }
make_leaf() {  # NAME CA EXTENSION
  key "$1"
  openssl req -new -key "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$1"
  printf '%s\n' "$3" >"$PKI/$1.ext"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" \
    -CAcreateserial -out "$PKI/$1.pem" -days 2 -extfile "$PKI/$1.ext" 2>/dev/null
}
make_ca ca
make_ca other-ca
make_leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'
make_leaf client ca 'extendedKeyUsage=clientAuth'

READ_TOKEN=it-read-$RANDOM$RANDOM
TRAIN_TOKEN=it-train-$RANDOM$RANDOM
ADMIN_TOKEN=it-admin-$RANDOM$RANDOM
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
{
  echo "# integration test tokens"
  echo "$(digest "$READ_TOKEN") read"
  echo "$(digest "$TRAIN_TOKEN") train"
  echo "$(digest "$ADMIN_TOKEN") admin"
} >"$WORK/tokens"

start_server --tls_cert "$PKI/server.pem" --tls_key "$PKI/server.key" \
  --tls_client_ca "$PKI/ca.pem" --auth_tokens "$WORK/tokens"
TLS=(--tls_ca "$PKI/ca.pem" --tls_cert "$PKI/client.pem" --tls_key "$PKI/client.key")
OUTS=()
run() {  # WANT_EXIT NAME -- ARGS...: keeps the outputs for the token check
  local want=$1 name=$2
  shift 3
  OUTS+=("$WORK/$name.out" "$WORK/$name.err")
  expect_exit "$want" "$WORK/$name.out" "$WORK/$name.err" -- --deadline 10 "$@"
}

# Transport: plaintext, wrong CA, no client certificate all fail.
run 1 plain -- health
run 1 wrong_ca -- --tls_ca "$PKI/other-ca.pem" --tls_cert "$PKI/client.pem" --tls_key "$PKI/client.key" health
run 1 no_client_cert -- --tls_ca "$PKI/ca.pem" health
# Health needs no token.
run 0 health -- "${TLS[@]}" health

# Tokens.
run 1 no_token -- "${TLS[@]}" models list
expect_contains "$WORK/no_token.err" "^error: UNAUTHENTICATED"
run 1 wrong_token -- "${TLS[@]}" --token "not-$READ_TOKEN" models list
expect_contains "$WORK/wrong_token.err" "^error: UNAUTHENTICATED"
BACKPROP_TOKEN=$READ_TOKEN run 0 read_list -- "${TLS[@]}" models list
run 1 read_create -- "${TLS[@]}" --token "$READ_TOKEN" models create --id m --layers 4,3
expect_contains "$WORK/read_create.err" "^error: PERMISSION_DENIED"
run 0 train_create -- "${TLS[@]}" --token "$TRAIN_TOKEN" models create --id m --layers 4,3
run 0 read_predict -- "${TLS[@]}" --token "$READ_TOKEN" predict m --values 0.1,0.2,0.3,0.4
run 0 read_bench -- "${TLS[@]}" --token "$READ_TOKEN" bench m --duration 0.3 --warmup 0 --concurrency 2
run 1 train_delete -- "${TLS[@]}" --token "$TRAIN_TOKEN" models delete m
expect_contains "$WORK/train_delete.err" "^error: PERMISSION_DENIED"
run 0 admin_delete -- "${TLS[@]}" --token "$ADMIN_TOKEN" models delete m
run 1 gone -- "${TLS[@]}" --token "$ADMIN_TOKEN" models get m
expect_contains "$WORK/gone.err" "^error: NOT_FOUND"

# --help names the flags but never an environment token's value.
BACKPROP_TOKEN=$ADMIN_TOKEN run 0 help -- --help
expect_contains "$WORK/help.out" "--token"

stop_server
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT"
for t in "$READ_TOKEN" "$TRAIN_TOKEN" "$ADMIN_TOKEN"; do
  if grep -F -- "$t" "${OUTS[@]}" "$SERVER_LOG"; then
    fail "a token appears in the output above"
  fi
done
echo "PASS: tls_tokens"
