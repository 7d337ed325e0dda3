-- 0002: Open WebUI 0.11's user, group, group_member and access_grant tables,
-- which the real-time layer reads to authorise room joins.
--
-- Every Open WebUI table is created inside a guard (to_regclass IS NULL)
-- together with its comments, indexes and constraints, and nothing happens
-- when the table already exists: against an existing Open WebUI database we
-- never alter, index or comment Open WebUI's own tables, whatever shape its
-- history left them in. Names and types follow Open WebUI's models (String
-- -> varchar, Text -> text, JSON -> json, BigInteger -> bigint); "user" and
-- "group" are reserved words and always quoted.

DO $$
BEGIN
	IF to_regclass('"user"') IS NULL THEN
		CREATE TABLE "user" (
			id varchar PRIMARY KEY,
			email varchar UNIQUE,
			username varchar(50),
			role varchar DEFAULT 'pending',
			name varchar NOT NULL,
			profile_image_url text,
			profile_banner_image_url text,
			bio text,
			gender text,
			date_of_birth date,
			timezone varchar,
			presence_state varchar,
			status_emoji varchar,
			status_message text,
			status_expires_at bigint,
			info json,
			variables json,
			settings json,
			oauth json,
			scim json,
			last_active_at bigint,
			updated_at bigint,
			created_at bigint
		);
		COMMENT ON TABLE "user" IS
			'Open WebUI users (created by Tidings because it was missing; Open WebUI owns it). '
			'Times are epoch seconds. Passwords live in Open WebUI''s auth table, not here.';
		COMMENT ON COLUMN "user".id IS 'User id, the id claim of the user''s JWT; usually a UUID.';
		COMMENT ON COLUMN "user".email IS 'Login email, unique.';
		COMMENT ON COLUMN "user".username IS 'Optional handle, at most 50 characters.';
		COMMENT ON COLUMN "user".role IS 'pending (not yet approved), user or admin. Admins may join every channel.';
		COMMENT ON COLUMN "user".name IS 'Display name.';
		COMMENT ON COLUMN "user".profile_image_url IS 'Avatar URL or data URI.';
		COMMENT ON COLUMN "user".profile_banner_image_url IS 'Profile banner URL or data URI.';
		COMMENT ON COLUMN "user".bio IS 'Free-text profile biography.';
		COMMENT ON COLUMN "user".gender IS 'Free-text profile gender.';
		COMMENT ON COLUMN "user".date_of_birth IS 'Profile date of birth.';
		COMMENT ON COLUMN "user".timezone IS 'IANA time zone name chosen by the user.';
		COMMENT ON COLUMN "user".presence_state IS 'Presence state the user chose; whether the user is live is last_active_at.';
		COMMENT ON COLUMN "user".status_emoji IS 'Emoji of the user''s custom status.';
		COMMENT ON COLUMN "user".status_message IS 'Text of the user''s custom status.';
		COMMENT ON COLUMN "user".status_expires_at IS 'When the custom status expires, epoch seconds; NULL: never.';
		COMMENT ON COLUMN "user".info IS 'JSON object of additional profile information.';
		COMMENT ON COLUMN "user".variables IS 'JSON object of user-level variables.';
		COMMENT ON COLUMN "user".settings IS 'JSON object of the user''s settings (the front end keeps its own under ui).';
		COMMENT ON COLUMN "user".oauth IS 'JSON object of linked OAuth identities, keyed by provider.';
		COMMENT ON COLUMN "user".scim IS 'JSON object of SCIM provisioning data.';
		COMMENT ON COLUMN "user".last_active_at IS
			'Last activity, epoch seconds. Open WebUI counts a user as active when this is within 180 s.';
		COMMENT ON COLUMN "user".updated_at IS 'Last profile change, epoch seconds.';
		COMMENT ON COLUMN "user".created_at IS 'Sign-up time, epoch seconds.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('"group"') IS NULL THEN
		CREATE TABLE "group" (
			id text PRIMARY KEY,
			user_id text,
			name text,
			description text,
			data json,
			meta json,
			permissions json,
			created_at bigint,
			updated_at bigint
		);
		COMMENT ON TABLE "group" IS
			'Open WebUI user groups (created by Tidings because it was missing; Open WebUI owns it). '
			'Members are in group_member; times are epoch seconds.';
		COMMENT ON COLUMN "group".id IS 'Group id, usually a UUID; principal_id of access_grant rows with principal_type group.';
		COMMENT ON COLUMN "group".user_id IS 'User who created the group.';
		COMMENT ON COLUMN "group".name IS 'Display name.';
		COMMENT ON COLUMN "group".description IS 'Free-text description.';
		COMMENT ON COLUMN "group".data IS 'JSON object of group settings.';
		COMMENT ON COLUMN "group".meta IS 'JSON object of metadata.';
		COMMENT ON COLUMN "group".permissions IS
			'JSON object of feature permissions granted to members, e.g. features.channels; '
			'when no group says, Open WebUI''s USER_PERMISSIONS_* defaults apply.';
		COMMENT ON COLUMN "group".created_at IS 'Creation time, epoch seconds.';
		COMMENT ON COLUMN "group".updated_at IS 'Last change, epoch seconds.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('group_member') IS NULL THEN
		CREATE TABLE group_member (
			id text PRIMARY KEY,
			group_id text NOT NULL REFERENCES "group" (id) ON DELETE CASCADE,
			user_id text NOT NULL,
			created_at bigint,
			updated_at bigint,
			CONSTRAINT uq_group_member_group_user UNIQUE (group_id, user_id)
		);
		-- The unique constraint serves lookups by group; this one serves
		-- "which groups is this user in", asked on every channel join.
		CREATE INDEX ix_group_member_user_id_group_id ON group_member (user_id, group_id);
		COMMENT ON TABLE group_member IS
			'Membership of users in Open WebUI groups (created by Tidings because it was missing; '
			'Open WebUI owns it). Deleting a group deletes its rows. Times are epoch seconds.';
		COMMENT ON COLUMN group_member.id IS 'Row id, usually a UUID.';
		COMMENT ON COLUMN group_member.group_id IS 'The group ("group".id); rows go when the group is deleted.';
		COMMENT ON COLUMN group_member.user_id IS 'The member ("user".id).';
		COMMENT ON COLUMN group_member.created_at IS 'When the user was added, epoch seconds.';
		COMMENT ON COLUMN group_member.updated_at IS 'Last change, epoch seconds.';
	END IF;
END
$$;

DO $$
BEGIN
	IF to_regclass('access_grant') IS NULL THEN
		CREATE TABLE access_grant (
			id text PRIMARY KEY,
			resource_type text NOT NULL,
			resource_id text NOT NULL,
			principal_type text NOT NULL,
			principal_id text NOT NULL,
			permission text NOT NULL,
			created_at bigint NOT NULL,
			CONSTRAINT uq_access_grant_grant
				UNIQUE (resource_type, resource_id, principal_type, principal_id, permission)
		);
		COMMENT ON TABLE access_grant IS
			'Who may read or write an Open WebUI resource (created by Tidings because it was missing; '
			'Open WebUI owns it). The owner of a resource needs no grant. Permissions match exactly: '
			'a write grant does not imply read.';
		COMMENT ON COLUMN access_grant.id IS 'Row id, usually a UUID.';
		COMMENT ON COLUMN access_grant.resource_type IS
			'Kind of resource: channel, note, knowledge, model, prompt, tool, file, ...';
		COMMENT ON COLUMN access_grant.resource_id IS 'Id of the resource in its own table (e.g. channel.id, note.id).';
		COMMENT ON COLUMN access_grant.principal_type IS
			'user, group or anyone. (user, *) is every signed-in user; (anyone, *) allows access without login.';
		COMMENT ON COLUMN access_grant.principal_id IS 'A "user".id, a "group".id, or * for everyone of principal_type.';
		COMMENT ON COLUMN access_grant.permission IS 'read or write.';
		COMMENT ON COLUMN access_grant.created_at IS 'When the grant was made, epoch seconds.';
	END IF;
END
$$;
