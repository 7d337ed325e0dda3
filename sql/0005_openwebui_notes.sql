-- 0005: Open WebUI 0.11's note table, whose collaborative documents the
-- real-time layer edits (Yjs) and saves. Created only when missing; see 0002
-- for why the guards also cover comments. Times are epoch nanoseconds.

DO $$
BEGIN
	IF to_regclass('note') IS NULL THEN
		CREATE TABLE note (
			id text PRIMARY KEY,
			user_id text,
			title text,
			data json,
			meta json,
			created_at bigint,
			updated_at bigint
		);
		COMMENT ON TABLE note IS
			'Open WebUI notes (created by Tidings because it was missing; Open WebUI owns it). '
			'Readable by the owner, admins, and through access_grant rows with resource_type note. '
			'Times are epoch nanoseconds.';
		COMMENT ON COLUMN note.id IS 'Note id, usually a UUID; the collaborative (Yjs) document of the note is note:{id}.';
		COMMENT ON COLUMN note.user_id IS 'Owner ("user".id).';
		COMMENT ON COLUMN note.title IS 'Title.';
		COMMENT ON COLUMN note.data IS 'JSON object: content{md, html, json} (the saved document; the Yjs state itself is never stored here), files[], ...';
		COMMENT ON COLUMN note.meta IS 'JSON object of metadata.';
		COMMENT ON COLUMN note.created_at IS 'Creation time, epoch nanoseconds.';
		COMMENT ON COLUMN note.updated_at IS 'Last save, epoch nanoseconds.';
	END IF;
END
$$;
