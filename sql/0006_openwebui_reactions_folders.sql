-- 0006: Open WebUI 0.11's message_reaction and folder tables. Reactions are
-- part of every channel message the real-time layer sends (MessageResponse
-- lists them); folders carry the unread counts sent with chat:list. Created
-- only when missing; see 0002 for why the guards also cover comments.

DO $$
BEGIN
	IF to_regclass('message_reaction') IS NULL THEN
		CREATE TABLE message_reaction (
			id text PRIMARY KEY,
			user_id text,
			message_id text,
			name text,
			created_at bigint
		);
		CREATE INDEX message_reaction_message_id_idx ON message_reaction (message_id);
		COMMENT ON TABLE message_reaction IS
			'Emoji reactions to channel messages, one row per user and emoji (created by Tidings '
			'because it was missing; Open WebUI owns it).';
		COMMENT ON COLUMN message_reaction.id IS 'Reaction id, usually a UUID.';
		COMMENT ON COLUMN message_reaction.user_id IS 'Who reacted ("user".id).';
		COMMENT ON COLUMN message_reaction.message_id IS 'The channel message (message.id).';
		COMMENT ON COLUMN message_reaction.name IS 'Emoji name, e.g. thumbsup.';
		COMMENT ON COLUMN message_reaction.created_at IS 'When, epoch nanoseconds.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('folder') IS NULL THEN
		CREATE TABLE folder (
			id text PRIMARY KEY,
			parent_id text,
			user_id text,
			name text,
			items json,
			meta json,
			data json,
			is_expanded boolean DEFAULT false,
			created_at bigint,
			updated_at bigint
		);
		CREATE INDEX folder_user_id_idx ON folder (user_id);
		COMMENT ON TABLE folder IS
			'Chat folders of a user, nested through parent_id (created by Tidings because it was '
			'missing; Open WebUI owns it). Chats point at their folder with chat.folder_id. Times are epoch seconds.';
		COMMENT ON COLUMN folder.id IS 'Folder id, usually a UUID.';
		COMMENT ON COLUMN folder.parent_id IS 'Enclosing folder (folder.id); NULL at the top level.';
		COMMENT ON COLUMN folder.user_id IS 'Owner ("user".id).';
		COMMENT ON COLUMN folder.name IS 'Display name.';
		COMMENT ON COLUMN folder.items IS 'JSON: legacy list of chat and file ids kept by the front end.';
		COMMENT ON COLUMN folder.meta IS 'JSON object: front-end metadata (icon and the like).';
		COMMENT ON COLUMN folder.data IS 'JSON object: folder settings (system prompt, files, model).';
		COMMENT ON COLUMN folder.is_expanded IS 'Shown expanded in the sidebar.';
		COMMENT ON COLUMN folder.created_at IS 'Creation time, epoch seconds.';
		COMMENT ON COLUMN folder.updated_at IS 'Last change, epoch seconds.';
	END IF;
END
$$;
