-- 0003: Open WebUI 0.11's chat table and its chat_message mirror, which the
-- workers update while a model streams its answer (content, output, status
-- history, sources, done). Created only when missing; see 0002 for why the
-- guards also cover comments and indexes. Times are epoch seconds.

DO $$
BEGIN
	IF to_regclass('chat') IS NULL THEN
		CREATE TABLE chat (
			id varchar PRIMARY KEY,
			user_id varchar,
			title text,
			chat json,
			created_at bigint,
			updated_at bigint,
			share_id text UNIQUE,
			archived boolean DEFAULT false,
			pinned boolean DEFAULT false,
			meta json DEFAULT '{}',
			variables json,
			folder_id text,
			tasks json,
			summary text,
			current_message_id text,
			last_read_at bigint
		);
		-- Open WebUI's index names, so that a later Open WebUI migration
		-- that checks for them finds them.
		CREATE INDEX ix_chat_user_id ON chat (user_id);
		CREATE INDEX ix_chat_created_at ON chat (created_at);
		CREATE INDEX ix_chat_updated_at ON chat (updated_at);
		CREATE INDEX folder_id_idx ON chat (folder_id);
		CREATE INDEX user_id_pinned_idx ON chat (user_id, pinned);
		CREATE INDEX user_id_archived_idx ON chat (user_id, archived);
		CREATE INDEX updated_at_user_id_idx ON chat (updated_at, user_id);
		CREATE INDEX folder_id_user_id_idx ON chat (folder_id, user_id);
		COMMENT ON TABLE chat IS
			'Open WebUI conversations (created by Tidings because it was missing; Open WebUI owns it). '
			'The whole conversation tree is the JSON column chat; each message is mirrored in chat_message. '
			'Times are epoch seconds.';
		COMMENT ON COLUMN chat.id IS 'Chat id, usually a UUID; the chat_id of socket events and of chat_message rows.';
		COMMENT ON COLUMN chat.user_id IS 'Owner ("user".id).';
		COMMENT ON COLUMN chat.title IS 'Title shown in the sidebar.';
		COMMENT ON COLUMN chat.chat IS
			'The conversation as the front end keeps it: {title, models[], params{}, history{messages{id: message}, currentId}, '
			'messages[] (the current branch), tags[], timestamp (ms)}. history.messages[mid] is the message tree '
			'(parentId, childrenIds[], role, content, statusHistory[], sources[], output[], done, ...); see docs/schema.md.';
		COMMENT ON COLUMN chat.created_at IS 'Creation time, epoch seconds.';
		COMMENT ON COLUMN chat.updated_at IS 'Last change, epoch seconds; a chat is unread while this is after last_read_at.';
		COMMENT ON COLUMN chat.share_id IS 'Token of the public share link, unique; NULL when not shared.';
		COMMENT ON COLUMN chat.archived IS 'Hidden from the main chat list.';
		COMMENT ON COLUMN chat.pinned IS 'Pinned at the top of the chat list.';
		COMMENT ON COLUMN chat.meta IS
			'JSON object of metadata: tags, and for internal chats internal:true with type (e.g. timer), '
			'parent_chat_id, status, cancel_on.';
		COMMENT ON COLUMN chat.variables IS 'JSON object of the chat''s prompt variables.';
		COMMENT ON COLUMN chat.folder_id IS 'Folder the chat is filed in (folder.id); NULL: none.';
		COMMENT ON COLUMN chat.tasks IS 'JSON array of the chat''s task list.';
		COMMENT ON COLUMN chat.summary IS 'Generated summary of the conversation.';
		COMMENT ON COLUMN chat.current_message_id IS 'Id of the message the conversation is at (history.currentId).';
		COMMENT ON COLUMN chat.last_read_at IS 'When the owner last read the chat, epoch seconds; NULL: never.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('chat_message') IS NULL THEN
		CREATE TABLE chat_message (
			id text PRIMARY KEY,
			chat_id text NOT NULL REFERENCES chat (id) ON DELETE CASCADE,
			user_id text,
			role text NOT NULL,
			parent_id text,
			content json,
			output json,
			model_id text,
			files json,
			sources json,
			embeds json,
			meta json,
			done boolean DEFAULT true,
			status_history json,
			error json,
			usage json,
			context_summary text,
			created_at bigint,
			updated_at bigint
		);
		CREATE INDEX ix_chat_message_chat_id ON chat_message (chat_id);
		CREATE INDEX ix_chat_message_user_id ON chat_message (user_id);
		CREATE INDEX ix_chat_message_model_id ON chat_message (model_id);
		CREATE INDEX ix_chat_message_created_at ON chat_message (created_at);
		CREATE INDEX chat_message_chat_parent_idx ON chat_message (chat_id, parent_id);
		CREATE INDEX chat_message_model_created_idx ON chat_message (model_id, created_at);
		CREATE INDEX chat_message_user_created_idx ON chat_message (user_id, created_at);
		COMMENT ON TABLE chat_message IS
			'One row per message of chat.chat->history->messages, written alongside it (created by Tidings because '
			'it was missing; Open WebUI owns it). id is {chat_id}-{message_id}. Deleting a chat deletes its rows. '
			'Times are epoch seconds.';
		COMMENT ON COLUMN chat_message.id IS
			'{chat_id}-{message_id}: the chat id, a hyphen, and the message''s key in history.messages.';
		COMMENT ON COLUMN chat_message.chat_id IS 'The chat (chat.id); rows go when the chat is deleted.';
		COMMENT ON COLUMN chat_message.user_id IS 'Owner of the chat ("user".id).';
		COMMENT ON COLUMN chat_message.role IS 'user, assistant or system.';
		COMMENT ON COLUMN chat_message.parent_id IS 'Message id (without the chat prefix) of the parent message (parentId); NULL for a root.';
		COMMENT ON COLUMN chat_message.content IS 'Message text as a JSON string, or a JSON array of content blocks.';
		COMMENT ON COLUMN chat_message.output IS 'JSON array of the assistant''s output items (reasoning, tool calls, text), OpenResponses style.';
		COMMENT ON COLUMN chat_message.model_id IS 'Model that wrote an assistant message (model); NULL for user messages.';
		COMMENT ON COLUMN chat_message.files IS 'JSON array of attached or generated files.';
		COMMENT ON COLUMN chat_message.sources IS 'JSON array of source objects (citations) of the answer.';
		COMMENT ON COLUMN chat_message.embeds IS 'JSON array of embeds shown with the message.';
		COMMENT ON COLUMN chat_message.meta IS 'JSON object of metadata.';
		COMMENT ON COLUMN chat_message.done IS
			'false while an assistant answer is still being generated; a chat with such a row does not count as unread.';
		COMMENT ON COLUMN chat_message.status_history IS
			'JSON array of status updates (the data of status events: action, description, done, ...), oldest first. '
			'Tidings appends each one here in the same statement as to chat.chat; Open WebUI itself wrote chat.chat only, '
			'so rows it wrote may lag until the message''s next write.';
		COMMENT ON COLUMN chat_message.error IS 'JSON error of a failed answer, e.g. {"content": "..."}; NULL when none.';
		COMMENT ON COLUMN chat_message.usage IS 'JSON object of token usage (input_tokens, output_tokens, ...).';
		COMMENT ON COLUMN chat_message.context_summary IS 'Summary of the earlier conversation when the context was compacted at this message.';
		COMMENT ON COLUMN chat_message.created_at IS 'Message timestamp, epoch seconds (the message''s timestamp).';
		COMMENT ON COLUMN chat_message.updated_at IS 'Last change of the row, epoch seconds.';
	END IF;
END
$$;
