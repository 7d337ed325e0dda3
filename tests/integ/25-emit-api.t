#!/usr/bin/env bash
# The producer API on the internal port: POST /api/v1/emit answers 202 once
# the entry (or each entry of a batch) is on the ingress stream, refuses bad
# requests with a reason, and refuses oversized bodies before buffering them.
. "$(dirname "$0")/lib.sh"
watchdog 40

KEY=k-$RANDOM$RANDOM
setup_stack TIDINGS_API_KEY=$KEY
A=$(admin_url gw1)
post() { curl -s -o "$TMP/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' "$@"; }
auth=(-H "Authorization: Bearer $KEY")

code=$(post "${auth[@]}" --data '{"event":"events","to":{"user":"u1"},"data":{"chat_id":"c1","message_id":"m1","data":{"type":"status","data":{"done":true}}},"update_db":true,"id":"emit-test-1"}' "$A/api/v1/emit")
is "$code" 202 "a valid emit is accepted with 202"
like "$(cat "$TMP/resp")" '"id":"emit-test-1"' "the answer carries the event id"
dump=$(ingress_dump)
entry=$(grep '"emit-test-1"' <<<"$dump")
like "$entry" '"kind":"emit"' "the entry is on an ingress stream as kind=emit"
like "$entry" '"to_type":"user","to":"u1"' "with its target"
like "$entry" '"update_db":"1"' "and update_db"
like "$entry" '"data":"\{\\"chat_id\\":\\"c1\\"' "and the data as sent"
# The shard is the chat's, as docs/redis.md computes it.
want=$(node -e 'let h=2166136261;for(const c of Buffer.from("chat:c1")){h^=c;h=Math.imul(h,16777619)>>>0}console.log(h%16)')
like "$entry" "\"stream\":\"$PREFIX:ingress:$want\"" "on the chat's shard (fnv1a32('chat:c1') % 16 = $want)"

# The data goes on as sent but for the whitespace between tokens (number
# spellings and escapes kept); the chat id that picks the shard is read
# with its escapes decoded.
code=$(post "${auth[@]}" --data '{"event":"events","to":{"user":"u1"},"id":"emit-sp","data": { "chat_id" : "c\u0031", "x" : [1.50, 2E3, -0] } }' "$A/api/v1/emit")
is "$code" 202 "an emit with spaced data is accepted"
entry=$(ingress_dump | grep '"emit-sp"')
like "$entry" '"data":"\{\\"chat_id\\":\\"c\\\\u0031\\",\\"x\\":\[1.50,2E3,-0\]\}"' "its data is on the stream as sent, compacted"
like "$entry" "\"stream\":\"$PREFIX:ingress:$want\"" "on chat c1's shard: the escaped id was decoded"

# A name given twice counts once, the first time, as cJSON reads it.
code=$(post "${auth[@]}" --data '{"event":"first","to":{"user":"u1"},"event":"second","id":"emit-dup","id":"other"}' "$A/api/v1/emit")
is "$code" 202 "an emit naming event and id twice is accepted"
like "$(ingress_dump | grep '"emit-dup"')" '"event":"first"' "with the first of each"

code=$(post "${auth[@]}" --data '{"event":"events","to":{"room":"channel:x"},"data":{}}' "$A/api/v1/emit")
is "$code" 202 "an emit without id gets one"
like "$(cat "$TMP/resp")" '"id":"emit-gw1-[0-9]{13}-[0-9]+"' "a generated id: gateway, boot time, sequence"
first=$(sed -n 's/.*"id":"emit-gw1-[0-9]*-\([0-9]*\)".*/\1/p' "$TMP/resp")
post "${auth[@]}" --data '{"event":"events","to":{"room":"channel:x"},"data":{}}' "$A/api/v1/emit" >/dev/null
second=$(sed -n 's/.*"id":"emit-gw1-[0-9]*-\([0-9]*\)".*/\1/p' "$TMP/resp")
check "the next generated id follows it (${first:-none}, then ${second:-none})" test "${second:-0}" -gt "${first:-0}"

# A batch: one request, its entries in order on their chats' shards, the
# ids answered in the array's order.
batch='[{"event":"events","to":{"user":"u1"},"data":{"chat_id":"cb","n":1},"id":"emit-b1"},'
batch+='{"event":"events","to":{"user":"u2"},"data":{"chat_id":"cb","n":2}},'
batch+='{"event":"events","to":{"user":"u1"},"data":{"chat_id":"cb","n":3,"big":1700000000123456789},"update_db":true,"id":"emit-b3"}]'
code=$(post "${auth[@]}" --data "$batch" "$A/api/v1/emit")
is "$code" 202 "a batch of 3 emits is accepted with 202"
like "$(cat "$TMP/resp")" '^\{"ids":\["emit-b1","emit-gw1-[0-9]{13}-[0-9]+","emit-b3"\]\}$' "the answer lists the 3 ids in order"
dump=$(ingress_dump)
is "$(grep -c '\\"chat_id\\":\\"cb\\"' <<<"$dump")" 3 "the 3 entries are on the ingress streams"
is "$(grep '\\"chat_id\\":\\"cb\\"' <<<"$dump" | grep -o '\\"n\\":[0-9]' | tr -d '\\"n:' | tr -d '\n')" 123 "in the batch's order (one chat, one shard)"
like "$(grep '"emit-b3"' <<<"$dump")" '"update_db":"1".*1700000000123456789|1700000000123456789.*"update_db":"1"' "each with its own update_db and data, numbers intact"
before=$(grep -c '"kind":"emit"' <<<"$dump")
for bad in '[]' '[{"event":"e","to":{"user":"u1"}},{"event":"e"}]' '[{"event":"e","to":{"user":"u1"}},3]'; do
	code=$(post "${auth[@]}" --data "$bad" "$A/api/v1/emit")
	is "$code" 400 "batch refused with 400: $bad"
	like "$(cat "$TMP/resp")" '"error":"' "  with a reason"
done
like "$(cat "$TMP/resp")" '"error":"emit 1: ' "  naming the emit at fault"
big=$(node -e 'const a=[];for(let i=0;i<1001;i++)a.push({event:"e",to:{user:"u1"}});console.log(JSON.stringify(a))')
code=$(post "${auth[@]}" --data "$big" "$A/api/v1/emit")
is "$code" 400 "a batch of 1001 emits is refused"
is "$(ingress_dump | grep -c '"kind":"emit"')" "$before" "a refused batch queued nothing"

code=$(post --data '{"event":"e","to":{"user":"u1"}}' "$A/api/v1/emit")
is "$code" 401 "no bearer token: 401"
code=$(post -H "Authorization: Bearer wrong" --data '{"event":"e","to":{"user":"u1"}}' "$A/api/v1/emit")
is "$code" 401 "wrong bearer token: 401"
for bad in '[1,2]' '{"to":{"user":"u1"}}' '{"event":"e"}' '{"event":"e","to":{"user":"u1","room":"r"}}' \
	'{"event":"e","to":{"user":"a*b"}}' '{"event":"e","to":{"user":"u1"},"update_db":"yes"}' \
	'{"event":"e","to":{"user":"u1"},"id":"x y"}' 'not json' \
	'{"event":"e","to":{"user":"u1"},"data":"\ud800"}' '{"event":"e","to":{"user":"u1"},"data":[1,]}' \
	"{\"event\":\"e\",\"to\":{\"user\":\"u1\"},\"data\":\"$(printf '\xc3\x28')\"}"; do
	code=$(post "${auth[@]}" --data "$bad" "$A/api/v1/emit")
	is "$code" 400 "refused with 400: $bad"
	like "$(cat "$TMP/resp")" '"error":"' "  with a reason"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$A/api/v1/emit")
is "$code" 405 "GET is not allowed"
# 40 MB declared: refused from the header, before the body is read.
code=$(head -c 40000000 /dev/zero | tr '\0' 'x' | post "${auth[@]}" --data-binary @- "$A/api/v1/emit")
is "$code" 413 "a 40 MB emit is refused with 413 before buffering"

kill_redis
code=$(post "${auth[@]}" --data '{"event":"e","to":{"user":"u1"}}' "$A/api/v1/emit")
is "$code" 503 "Redis away: 503, nothing claimed as queued"
code=$(post "${auth[@]}" --data '[{"event":"e","to":{"user":"u1"}},{"event":"e","to":{"user":"u2"}}]' "$A/api/v1/emit")
is "$code" 503 "Redis away: a batch gets 503 too"
check_gateway_stop gw1
done_testing
