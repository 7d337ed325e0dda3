#!/usr/bin/env bash
# Channel messages written by producers, and the folder unread counts of
# chat:list, end to end (real Redis, Postgres, gateway, worker,
# socket.io-client and python-socketio):
# - channel mode: `events` whose chat_id is channel:{cid} stream an AI reply
#   into the channel message row (content, data.output, meta.done) and the
#   channel gets events:channel message:update with the stored message;
#   chat:message:error makes "Error: ..."; other types are dropped;
# - `events:channel` with update_db: message inserted (the author becomes a
#   member of a standard channel), edited (merged, the stored message sent),
#   deleted with its thread and reactions;
# - events:chat on an unread chat sends folder_unread_counts, summed up the
#   folder tree, not counting running chats; on a read chat it does not.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

. "$(dirname "$0")/worker.sh"
start_db_stack
KEY=k$RANDOM
start_gateway gw1 TIDINGS_API_KEY=$KEY || bail "gateway starts"
sql() { psql_q "$1" owui; }
sql "
INSERT INTO \"user\" (id, name, email, role) VALUES ('u1','Alice','a@x','user'), ('u2','Bob','b@x','user');
INSERT INTO channel (id, user_id, type, name, created_at, updated_at) VALUES ('cstd','u1',NULL,'general',1,1);
INSERT INTO access_grant (id, resource_type, resource_id, principal_type, principal_id, permission, created_at)
  VALUES ('g1','channel','cstd','user','u2','read',1);
INSERT INTO message (id, user_id, channel_id, content, data, meta, created_at, updated_at) VALUES
  ('root','u2','cstd','question','{}','{}',10,10),
  ('msg1','u1','cstd','','{\"files\":[{\"id\":\"f\"}]}','{\"model_id\":\"llama\"}',20,20),
  ('msg2','u1','cstd','','{}','{}',30,30);
UPDATE message SET reply_to_id = 'root' WHERE id = 'msg1';
INSERT INTO message_reaction (id, user_id, message_id, name, created_at) VALUES
  ('r1','u2','msg1','thumbsup',1), ('r2','u1','msg1','thumbsup',2), ('r3','u1','msg1','eyes',3);
INSERT INTO folder (id, parent_id, user_id, name, created_at, updated_at) VALUES
  ('top',NULL,'u1','Work',1,1), ('sub','top','u1','Project',1,1), ('empty',NULL,'u1','Other',1,1);
INSERT INTO chat (id, user_id, title, chat, folder_id, created_at, updated_at, last_read_at) VALUES
  ('c_unread','u1','t','{}','sub',1,100,NULL),
  ('c_running','u1','t','{}','sub',1,100,NULL),
  ('c_read','u1','t','{}','top',1,100,200),
  ('c_target','u1','t','{}','sub',1,100,50);
INSERT INTO chat_message (id, chat_id, user_id, role, done, created_at, updated_at)
  VALUES ('c_running-x','c_running','u1','assistant',false,1,1);
" >/dev/null || bail "seed data inserted"
worker_start w1 TIDINGS_READ_COALESCE_MS=0

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token u1)"
py_client py --url "$(gw_url gw1)" --token "$(token u2)"
for c in a py; do client_wait "$c" '"t":"connect"' 1 10 || bail "client $c connects"; done
emit() { client_send "$1" "{\"cmd\":\"emit\",\"event\":\"$2\",\"args\":[$3]}"; }
emit a user-join "{\"auth\":{\"token\":\"$(token u1)\"}}"
emit py user-join "{\"auth\":{\"token\":\"$(token u2)\"}}"
check "both sockets are in channel:cstd" wait_until 10 bash -c \
	"[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:room:channel:cstd gw1)\" = 2 ]"

post() { curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" --data "$1" "$(admin_url gw1)/api/v1/emit"; }
chan() { printf '{"event":"events","to":{"user":"u1"},"update_db":true,"data":{"chat_id":"channel:cstd","message_id":"%s","data":{"type":"%s","data":%s}}}' "$1" "$2" "$3"; }

# ---- channel mode: a streamed AI reply
is "$(post "$(chan msg1 chat:completion '{"content":"Hel","output":[{"type":"message","content":"Hel"}]}')")" 202 "first delta emitted"
is "$(post "$(chan msg1 chat:completion '{"content":"Hello","output":[{"type":"message","content":"Hello"}]}')")" 202 "second delta emitted"
is "$(post "$(chan msg1 status '{"description":"searching"}')")" 202 "a status to a channel chat is accepted"
is "$(post "$(chan msg1 chat:completion '{"content":"Hello world","output":[{"type":"message","content":"Hello world"}],"done":true}')")" 202 "the final update emitted"
DONE="x[0].channel_id === 'cstd' && x[0].message_id === 'msg1' && x[0].data.type === 'message:update' && x[0].data.data.content === 'Hello world' && x[0].data.data.meta.done === true"
for c in a py; do
	check "$c gets message:update with the finished message" client_wait_q "$c" "ev('events:channel').some(x => $DONE)" 10
done
is "$(sql "SELECT content || '|' || (data::jsonb #>> '{output,0,content}') || '|' || (data::jsonb #>> '{files,0,id}') || '|' || (meta::jsonb ->> 'done') || '|' || (meta::jsonb ->> 'model_id') || '|' || (updated_at > 1000000000000000000)::text FROM message WHERE id='msg1'")" \
	"Hello world|Hello world|f|true|llama|true" "the row has the content, data.output (files kept), meta.done (model_id kept) and a new updated_at in ns"
m=$(q "JSON.stringify(ev('events:channel').filter(x => $DONE)[0][0].data.data)" a)
is "$(node -e 'const m=JSON.parse(process.argv[1]);console.log([m.id,m.user_id,m.channel_id,m.user.name,m.user.role,m.reply_to_id,m.reply_to_message.content,m.reply_to_message.data,m.reply_count,m.reactions.map(r=>r.name+":"+r.count+":"+r.users.map(u=>u.name).join("+")).join(","),typeof m.created_at].join("|"))' "$m")" \
	"msg1|u1|cstd|Alice|user|root|question|false|0|thumbsup:2:Bob+Alice,eyes:1:Alice|number" "the message is a full MessageResponse: author, slim reply_to_message, thread size, reactions by emoji"
is "$(q "ev('events').filter(x => x[0].chat_id === 'channel:cstd').length" a)" 0 "channel-mode events are not sent to the user's room"
is "$(q "ev('events:channel').filter(x => x[0].data.type !== 'message:update').length" a py)" 0 "the status to a channel chat is dropped"
n=$(q "ev('events:channel').filter(x => x[0].message_id === 'msg1').length" a)
like "$n" '^[23]$' "the second delta, 150 ms after the first, was throttled or sent: $n updates for 3 emits at most"

is "$(post "$(chan msg2 chat:message:error '{"error":{"content":"model offline"}}')")" 202 "an error emitted"
check "the error finishes the message" wait_until 10 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT content || '|' || (meta::jsonb ->> 'done') FROM message WHERE id='msg2'\")\" = 'Error: model offline|true' ]"
check "and the channel sees it" client_wait_q py "ev('events:channel').some(x => x[0].message_id === 'msg2' && x[0].data.data.content === 'Error: model offline')" 10
is "$(post "$(chan nosuch chat:completion '{"content":"x","done":true}')")" 202 "an update to a missing message is accepted"

# ---- events:channel with update_db
ch() { printf '{"event":"events:channel","to":{"room":"channel:cstd"},"update_db":true,"id":"%s","data":{"channel_id":"cstd","message_id":"%s","data":{"type":"%s","data":%s}}}' "$1" "$2" "$3" "$4"; }
NEW='{"id":"msg3","user_id":"u2","channel_id":"cstd","content":"hi all","data":{"files":[]},"meta":{},"temp_id":"t1","created_at":1700000000123456789,"ts":1795951088527890,"r":1.5e300}'
is "$(post "$(ch e1 msg3 message "$NEW")")" 202 "a new message emitted"
is "$(post "$(ch e1 msg3 message "$NEW")")" 202 "the same event again"
check "the message is delivered as sent" client_wait_q a "ev('events:channel').some(x => x[0].data.type === 'message' && x[0].data.data.temp_id === 't1')" 10
check "the message row is inserted" wait_until 10 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT content || '|' || user_id || '|' || created_at FROM message WHERE id='msg3'\")\" = 'hi all|u2|1700000000123456789' ]"
check "python-socketio gets the numbers exactly as emitted (no float, no rounding)" \
	has_lines py '"created_at":1700000000123456789,"ts":1795951088527890,"r":1.5e+300'
is "$(grep -c 'e+15\|e+18' "$TMP/py.out")" 0 "no integer reached a client in exponent form"
is "$(sql "SELECT count(*) || '|' || min(status) || '|' || bool_and(is_active)::text FROM channel_member WHERE channel_id='cstd' AND user_id='u2'")" "1|joined|true" "its author became a member of the standard channel, once"

is "$(post "$(ch e2 msg3 message:update '{"id":"msg3","content":"hi everyone","meta":{"edited":true}}')")" 202 "an edit emitted"
check "the edit is sent as the stored message" client_wait_q py \
	"ev('events:channel').some(x => x[0].data.type === 'message:update' && x[0].data.data.id === 'msg3' && x[0].data.data.content === 'hi everyone' && x[0].data.data.meta.edited === true && Array.isArray(x[0].data.data.data.files) && x[0].data.data.user.name === 'Bob')" 10
is "$(sql "SELECT content || '|' || (meta::jsonb ->> 'edited') || '|' || (data::jsonb ? 'files')::text FROM message WHERE id='msg3'")" "hi everyone|true|true" "the row: content replaced, meta merged, data kept"

sql "INSERT INTO message (id, user_id, channel_id, parent_id, content, created_at, updated_at) VALUES ('reply3','u1','cstd','msg3','a reply',5,5);
INSERT INTO message_reaction (id, user_id, message_id, name, created_at) VALUES ('r9','u1','msg3','tada',9);" >/dev/null
is "$(post "$(ch e3 msg3 message:delete '{"id":"msg3"}')")" 202 "a deletion emitted"
check "the message, its thread and its reactions are deleted" wait_until 10 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT (SELECT count(*) FROM message WHERE id IN ('msg3','reply3')) + (SELECT count(*) FROM message_reaction WHERE message_id='msg3')\")\" = 0 ]"
check "the deletion is delivered" client_wait_q a "ev('events:channel').some(x => x[0].data.type === 'message:delete' && x[0].message_id === 'msg3')" 10
is "$(sql "SELECT count(*) FROM message WHERE channel_id='cstd'")" 3 "the other messages are untouched"

# ---- events:chat: folder unread counts
emit a events:chat '{"chat_id":"c_target","data":{"type":"last_read_at"}}'
LIST="x[0].data.type === 'chat:list' && x[0].data.data.chat_id"
check "reading an unread chat sends chat:list with folder_unread_counts" client_wait_q a \
	"ev('events').some(x => $LIST === 'c_target' && x[0].data.data.folder_unread_counts)" 10
is "$(q "JSON.stringify(ev('events').filter(x => $LIST === 'c_target')[0][0].data.data.folder_unread_counts)" a)" \
	'{"empty":0,"sub":1,"top":1}' "counts: the unread chat in its folder and its parent; not the running chat, not the read one"
emit a events:chat '{"chat_id":"c_read","data":{"type":"last_read_at"}}'
check "reading a read chat sends chat:list" client_wait_q a "ev('events').some(x => $LIST === 'c_read')" 10
is "$(q "ev('events').filter(x => $LIST === 'c_read' && 'folder_unread_counts' in x[0].data.data).length" a)" 0 "without folder_unread_counts"
is "$(q "ev('events').filter(x => x[0].data && x[0].data.type === 'chat:list').length" py)" 0 "another user hears nothing of it"

client_stop a
client_stop py
stop_pid "$WPID_w1" 10
check_gateway_stop gw1
done_testing
