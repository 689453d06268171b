#!/usr/bin/env bash
# Produce one signed Heartbeat to the events topic from the shell: jq builds the canonical
# JSON, cast (Foundry) hashes and signs it, kcat sends it with the right key.
#
#   BROKER=127.0.0.1:9092 TOPIC=masa.events PRIVATE_KEY=0x... ./produce-with-kcat.sh [SEQ]
#
# The same four steps work from any language: canonical JSON (RFC 8785) of the envelope
# without "signature", keccak-256 of it, EIP-191 personal_sign of those 32 bytes, and the
# aggregate key as the Kafka key with Kafka's murmur2 partitioner.
set -euo pipefail
: "${BROKER:?set BROKER host:port}" "${PRIVATE_KEY:?set PRIVATE_KEY 0x...}"
TOPIC=${TOPIC:-masa.events}
CAST=${CAST:-cast}
seq=${1:-$(date +%s%3N)}

producer=$("$CAST" wallet address --private-key "$PRIVATE_KEY" | tr 'A-F' 'a-f')
unsigned=$(jq -cS -n \
    --arg id "$(cat /proc/sys/kernel/random/uuid)" \
    --arg at "$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)" \
    --arg producer "$producer" \
    --argjson seq "$seq" \
    '{id: $id, type: "Heartbeat", version: 2, occurred_at: $at, producer: $producer,
      payload: {seq: $seq, capabilities: ["data"]}}')
# jq -cS equals RFC 8785 here: ASCII keys, no floats, amounts (if any) as strings
digest=$("$CAST" keccak "$unsigned")
signature=$("$CAST" wallet sign --private-key "$PRIVATE_KEY" "$digest")
message=$(jq -c --arg signature "$signature" '. + {signature: $signature}' <<<"$unsigned")

# A heartbeat's aggregate key is its producer. librdkafka's default partitioner is not
# Kafka's: murmur2_random is, and ingest rejects a message in the wrong partition.
printf '%s|%s\n' "$producer" "$message" |
    kcat -P -b "$BROKER" -t "$TOPIC" -K '|' -X partitioner=murmur2_random
echo "$message"
