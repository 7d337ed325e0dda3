-- 0004: Open WebUI 0.11's channel, channel_member and message tables, which
-- decide which channel rooms a socket joins and which the workers write when
-- a channel message is posted. Created only when missing; see 0002 for why
-- the guards also cover comments and indexes. Unlike chats, every time here
-- is epoch NANOseconds (Python's time.time_ns()).

DO $$
BEGIN
	IF to_regclass('channel') IS NULL THEN
		CREATE TABLE channel (
			id text PRIMARY KEY,
			user_id text,
			type text,
			name text,
			description text,
			is_private boolean,
			data json,
			meta json,
			created_at bigint,
			updated_at bigint,
			updated_by text,
			archived_at bigint,
			archived_by text,
			deleted_at bigint,
			deleted_by text
		);
		COMMENT ON TABLE channel IS
			'Open WebUI channels (created by Tidings because it was missing; Open WebUI owns it). '
			'Standard channels are read through access_grant, group and dm channels through channel_member. '
			'Times are epoch nanoseconds.';
		COMMENT ON COLUMN channel.id IS 'Channel id, usually a UUID; the socket room is channel:{id}.';
		COMMENT ON COLUMN channel.user_id IS 'Creator and owner ("user".id); the owner always has access.';
		COMMENT ON COLUMN channel.type IS 'NULL or empty: standard channel; group: group channel; dm: direct messages.';
		COMMENT ON COLUMN channel.name IS 'Channel name (lower case).';
		COMMENT ON COLUMN channel.description IS 'Free-text description.';
		COMMENT ON COLUMN channel.is_private IS 'For group channels: membership is by invitation only.';
		COMMENT ON COLUMN channel.data IS 'JSON object of channel settings.';
		COMMENT ON COLUMN channel.meta IS 'JSON object of metadata.';
		COMMENT ON COLUMN channel.created_at IS 'Creation time, epoch nanoseconds.';
		COMMENT ON COLUMN channel.updated_at IS 'Last change, epoch nanoseconds.';
		COMMENT ON COLUMN channel.updated_by IS 'User who made the last change ("user".id).';
		COMMENT ON COLUMN channel.archived_at IS 'When the channel was archived, epoch nanoseconds; NULL: not archived. Archived channels are not joined.';
		COMMENT ON COLUMN channel.archived_by IS 'User who archived the channel.';
		COMMENT ON COLUMN channel.deleted_at IS 'When the channel was deleted (soft delete), epoch nanoseconds; NULL: not deleted.';
		COMMENT ON COLUMN channel.deleted_by IS 'User who deleted the channel.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('channel_member') IS NULL THEN
		CREATE TABLE channel_member (
			id text PRIMARY KEY,
			channel_id text NOT NULL,
			user_id text NOT NULL,
			role text,
			status text,
			is_active boolean NOT NULL DEFAULT true,
			is_channel_muted boolean DEFAULT false,
			is_channel_pinned boolean DEFAULT false,
			data json,
			meta json,
			invited_at bigint,
			invited_by text,
			joined_at bigint,
			left_at bigint,
			last_read_at bigint,
			created_at bigint,
			updated_at bigint
		);
		COMMENT ON TABLE channel_member IS
			'Membership of users in Open WebUI channels (created by Tidings because it was missing; Open WebUI owns it). '
			'Required for group and dm channels; for standard channels a row appears when the user first posts, '
			'and keeps the read marker. Times are epoch nanoseconds.';
		COMMENT ON COLUMN channel_member.id IS 'Row id, usually a UUID.';
		COMMENT ON COLUMN channel_member.channel_id IS 'The channel (channel.id).';
		COMMENT ON COLUMN channel_member.user_id IS 'The member ("user".id).';
		COMMENT ON COLUMN channel_member.role IS 'Role in the channel, e.g. manager; NULL: plain member.';
		COMMENT ON COLUMN channel_member.status IS 'Membership status, e.g. joined.';
		COMMENT ON COLUMN channel_member.is_active IS 'false once the user left or was removed; only active members join the room.';
		COMMENT ON COLUMN channel_member.is_channel_muted IS 'The user muted notifications of the channel.';
		COMMENT ON COLUMN channel_member.is_channel_pinned IS 'The user pinned the channel in the sidebar.';
		COMMENT ON COLUMN channel_member.data IS 'JSON object of per-member data.';
		COMMENT ON COLUMN channel_member.meta IS 'JSON object of metadata.';
		COMMENT ON COLUMN channel_member.invited_at IS 'When the user was invited, epoch nanoseconds.';
		COMMENT ON COLUMN channel_member.invited_by IS 'User who invited ("user".id).';
		COMMENT ON COLUMN channel_member.joined_at IS 'When the user joined, epoch nanoseconds.';
		COMMENT ON COLUMN channel_member.left_at IS 'When the user left, epoch nanoseconds; NULL: still a member.';
		COMMENT ON COLUMN channel_member.last_read_at IS
			'Read marker, epoch nanoseconds: messages created after it are unread for this user.';
		COMMENT ON COLUMN channel_member.created_at IS 'Row creation, epoch nanoseconds.';
		COMMENT ON COLUMN channel_member.updated_at IS 'Last change, epoch nanoseconds.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('message') IS NULL THEN
		CREATE TABLE message (
			id text PRIMARY KEY,
			user_id text,
			channel_id text,
			reply_to_id text,
			parent_id text,
			is_pinned boolean NOT NULL DEFAULT false,
			pinned_at bigint,
			pinned_by text,
			content text,
			data json,
			meta json,
			created_at bigint,
			updated_at bigint
		);
		COMMENT ON TABLE message IS
			'Channel messages, including thread replies (created by Tidings because it was missing; '
			'Open WebUI owns it). Chat messages are in chat/chat_message instead. Times are epoch nanoseconds.';
		COMMENT ON COLUMN message.id IS 'Message id, usually a UUID.';
		COMMENT ON COLUMN message.user_id IS 'Author ("user".id).';
		COMMENT ON COLUMN message.channel_id IS 'The channel (channel.id).';
		COMMENT ON COLUMN message.reply_to_id IS 'Message this one quotes in reply (message.id); NULL: none.';
		COMMENT ON COLUMN message.parent_id IS 'Thread root (message.id) for a thread reply; NULL for a top-level message.';
		COMMENT ON COLUMN message.is_pinned IS 'Pinned in the channel.';
		COMMENT ON COLUMN message.pinned_at IS 'When it was pinned, epoch nanoseconds.';
		COMMENT ON COLUMN message.pinned_by IS 'User who pinned it ("user".id).';
		COMMENT ON COLUMN message.content IS 'Message text (Markdown).';
		COMMENT ON COLUMN message.data IS
			'JSON object: files[], and for AI replies output[]; updates merge keys shallowly.';
		COMMENT ON COLUMN message.meta IS
			'JSON object: model_id, model_name and done for AI replies, webhook{id} for webhook posts; updates merge keys shallowly.';
		COMMENT ON COLUMN message.created_at IS 'Post time, epoch nanoseconds.';
		COMMENT ON COLUMN message.updated_at IS 'Last edit, epoch nanoseconds.';
	END IF;
END
$$;
