package storetest

// Column is one column as the catalog tests compare it. Kind is a
// dialect-neutral type: uuid, varchar, boolean, integer, bigint, timestamp, json, or
// enum:NAME (a native enum on PostgreSQL, TEXT with a CHECK on SQLite).
type Column struct {
	Table    string
	Name     string
	Kind     string
	Nullable bool
	PK       bool
	Extra    bool // not in the seed: added for a feature, explained in the migration
}

// Index is a secondary index (primary keys are in Column.PK).
type Index struct {
	Table   string
	Name    string
	Columns string // comma-separated, in index order
	Unique  bool
}

// ForeignKey is a single-column reference.
type ForeignKey struct {
	Table, Column, RefTable, RefColumn string
	OnDelete                           string // CASCADE, SET NULL
}

// Schema is a database's tables as the catalog tests see them.
type Schema struct {
	Columns     []Column
	Indexes     []Index
	ForeignKeys []ForeignKey
}

// SeedSchema is the seed's schema (seeds/000_5d956bc1848be6cc.txt, SPEC §4)
// and the extra columns and tables the flows need, marked Extra.
var SeedSchema = Schema{
	Columns: []Column{
		{Table: "users", Name: "id", Kind: "uuid", PK: true},
		{Table: "users", Name: "email", Kind: "varchar"},
		{Table: "users", Name: "password_hash", Kind: "varchar"},
		{Table: "users", Name: "email_verified", Kind: "boolean"},
		{Table: "users", Name: "account_status", Kind: "enum:account_status"},
		{Table: "users", Name: "failed_login_attempts", Kind: "integer"},
		{Table: "users", Name: "account_locked_until", Kind: "timestamp", Nullable: true},
		{Table: "users", Name: "registration_timestamp", Kind: "timestamp"},
		{Table: "users", Name: "last_login_timestamp", Kind: "timestamp", Nullable: true},
		{Table: "users", Name: "last_password_change", Kind: "timestamp"},
		{Table: "users", Name: "consent_timestamp", Kind: "timestamp"},
		{Table: "users", Name: "consent_status", Kind: "boolean"},
		{Table: "users", Name: "created_at", Kind: "timestamp"},
		{Table: "users", Name: "updated_at", Kind: "timestamp"},
		{Table: "users", Name: "lock_reason", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "users", Name: "last_failed_login_timestamp", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "jwt_tokens", Name: "id", Kind: "uuid", PK: true},
		{Table: "jwt_tokens", Name: "jti", Kind: "varchar"},
		{Table: "jwt_tokens", Name: "user_id", Kind: "uuid"},
		{Table: "jwt_tokens", Name: "token_type", Kind: "enum:token_type"},
		{Table: "jwt_tokens", Name: "token_value", Kind: "varchar", Nullable: true},
		{Table: "jwt_tokens", Name: "issued_at", Kind: "timestamp"},
		{Table: "jwt_tokens", Name: "expires_at", Kind: "timestamp"},
		{Table: "jwt_tokens", Name: "revoked", Kind: "boolean"},
		{Table: "jwt_tokens", Name: "revoked_at", Kind: "timestamp", Nullable: true},
		{Table: "jwt_tokens", Name: "device_info", Kind: "varchar", Nullable: true},
		{Table: "jwt_tokens", Name: "created_at", Kind: "timestamp"},
		{Table: "jwt_tokens", Name: "session_id", Kind: "uuid", Extra: true},
		{Table: "jwt_tokens", Name: "parent_id", Kind: "uuid", Nullable: true, Extra: true},
		{Table: "jwt_tokens", Name: "rotated_at", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "verification_tokens", Name: "id", Kind: "uuid", PK: true},
		{Table: "verification_tokens", Name: "token", Kind: "varchar"},
		{Table: "verification_tokens", Name: "user_id", Kind: "uuid"},
		{Table: "verification_tokens", Name: "token_type", Kind: "enum:verification_token_type"},
		{Table: "verification_tokens", Name: "created_at", Kind: "timestamp"},
		{Table: "verification_tokens", Name: "expires_at", Kind: "timestamp"},
		{Table: "verification_tokens", Name: "used", Kind: "boolean"},
		{Table: "verification_tokens", Name: "used_at", Kind: "timestamp", Nullable: true},

		{Table: "security_logs", Name: "id", Kind: "uuid", PK: true},
		{Table: "security_logs", Name: "event_type", Kind: "enum:event_type"},
		{Table: "security_logs", Name: "user_id", Kind: "uuid", Nullable: true},
		{Table: "security_logs", Name: "timestamp", Kind: "timestamp"},
		{Table: "security_logs", Name: "ip_address", Kind: "varchar", Nullable: true},
		{Table: "security_logs", Name: "user_agent", Kind: "varchar", Nullable: true},
		{Table: "security_logs", Name: "result", Kind: "enum:event_result"},
		{Table: "security_logs", Name: "failure_reason", Kind: "varchar", Nullable: true},
		{Table: "security_logs", Name: "additional_context", Kind: "json", Nullable: true},

		{Table: "sessions", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "sessions", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "sessions", Name: "device_info", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "sessions", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "sessions", Name: "last_used_at", Kind: "timestamp", Extra: true},
		{Table: "sessions", Name: "expires_at", Kind: "timestamp", Extra: true},
		{Table: "sessions", Name: "revoked_at", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "sessions", Name: "amr", Kind: "varchar", Extra: true},
		{Table: "sessions", Name: "client_id", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "sessions", Name: "scopes", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "sessions", Name: "browser_digest", Kind: "varchar", Nullable: true, Extra: true},

		{Table: "mfa_factors", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "mfa_factors", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "mfa_factors", Name: "kind", Kind: "varchar", Extra: true},
		{Table: "mfa_factors", Name: "secret", Kind: "varchar", Extra: true},
		{Table: "mfa_factors", Name: "confirmed", Kind: "boolean", Extra: true},
		{Table: "mfa_factors", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "mfa_factors", Name: "confirmed_at", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "mfa_factors", Name: "last_used_at", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "mfa_factors", Name: "last_step", Kind: "integer", Extra: true},

		{Table: "mfa_recovery_codes", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "mfa_recovery_codes", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "mfa_recovery_codes", Name: "code_digest", Kind: "varchar", Extra: true},
		{Table: "mfa_recovery_codes", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "mfa_recovery_codes", Name: "used_at", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "mfa_challenges", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "mfa_challenges", Name: "token", Kind: "varchar", Extra: true},
		{Table: "mfa_challenges", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "mfa_challenges", Name: "device_info", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "mfa_challenges", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "mfa_challenges", Name: "expires_at", Kind: "timestamp", Extra: true},
		{Table: "mfa_challenges", Name: "failures", Kind: "integer", Extra: true},
		{Table: "mfa_challenges", Name: "used_at", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "passkeys", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "passkeys", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "passkeys", Name: "name", Kind: "varchar", Extra: true},
		{Table: "passkeys", Name: "credential_id", Kind: "varchar", Extra: true},
		{Table: "passkeys", Name: "public_key", Kind: "varchar", Extra: true},
		{Table: "passkeys", Name: "attestation_type", Kind: "varchar", Extra: true},
		{Table: "passkeys", Name: "aaguid", Kind: "uuid", Extra: true},
		{Table: "passkeys", Name: "sign_count", Kind: "bigint", Extra: true},
		{Table: "passkeys", Name: "backup_eligible", Kind: "boolean", Extra: true},
		{Table: "passkeys", Name: "backup_state", Kind: "boolean", Extra: true},
		{Table: "passkeys", Name: "transports", Kind: "varchar", Extra: true},
		{Table: "passkeys", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "passkeys", Name: "last_used_at", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "webauthn_challenges", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "webauthn_challenges", Name: "challenge", Kind: "varchar", Extra: true},
		{Table: "webauthn_challenges", Name: "user_id", Kind: "uuid", Nullable: true, Extra: true},
		{Table: "webauthn_challenges", Name: "purpose", Kind: "varchar", Extra: true},
		{Table: "webauthn_challenges", Name: "mfa_challenge_id", Kind: "uuid", Nullable: true, Extra: true},
		{Table: "webauthn_challenges", Name: "session_data", Kind: "varchar", Extra: true},
		{Table: "webauthn_challenges", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "webauthn_challenges", Name: "expires_at", Kind: "timestamp", Extra: true},
		{Table: "webauthn_challenges", Name: "used_at", Kind: "timestamp", Nullable: true, Extra: true},

		{Table: "mail_outbox", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "mail_outbox", Name: "kind", Kind: "varchar", Extra: true},
		{Table: "mail_outbox", Name: "user_id", Kind: "uuid", Nullable: true, Extra: true},
		{Table: "mail_outbox", Name: "recipient", Kind: "varchar", Extra: true},
		{Table: "mail_outbox", Name: "data", Kind: "json", Nullable: true, Extra: true},
		{Table: "mail_outbox", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "mail_outbox", Name: "next_attempt_at", Kind: "timestamp", Extra: true},
		{Table: "mail_outbox", Name: "attempts", Kind: "integer", Extra: true},
		{Table: "mail_outbox", Name: "claimed_until", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "mail_outbox", Name: "last_error", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "mail_outbox", Name: "dead_at", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "mail_outbox", Name: "claim", Kind: "uuid", Nullable: true, Extra: true},

		{Table: "revocation_events", Name: "id", Kind: "bigint", PK: true, Extra: true},
		{Table: "revocation_events", Name: "kind", Kind: "varchar", Extra: true},
		{Table: "revocation_events", Name: "subject_id", Kind: "uuid", Extra: true},
		{Table: "revocation_events", Name: "reason", Kind: "varchar", Extra: true},
		{Table: "revocation_events", Name: "expires_at", Kind: "timestamp", Extra: true},
		{Table: "revocation_events", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "oauth_clients", Name: "id", Kind: "varchar", PK: true, Extra: true},
		{Table: "oauth_clients", Name: "name", Kind: "varchar", Extra: true},
		{Table: "oauth_clients", Name: "type", Kind: "varchar", Extra: true},
		{Table: "oauth_clients", Name: "secret_digest", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_clients", Name: "redirect_uris", Kind: "json", Extra: true},
		{Table: "oauth_clients", Name: "post_logout_redirect_uris", Kind: "json", Extra: true},
		{Table: "oauth_clients", Name: "first_party", Kind: "boolean", Extra: true},
		{Table: "oauth_clients", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "oauth_clients", Name: "updated_at", Kind: "timestamp", Extra: true},

		{Table: "oauth_consents", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "oauth_consents", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "oauth_consents", Name: "client_id", Kind: "varchar", Extra: true},
		{Table: "oauth_consents", Name: "scopes", Kind: "varchar", Extra: true},
		{Table: "oauth_consents", Name: "granted_at", Kind: "timestamp", Extra: true},

		{Table: "oauth_auth_requests", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "client_id", Kind: "varchar", Extra: true},
		{Table: "oauth_auth_requests", Name: "redirect_uri", Kind: "varchar", Extra: true},
		{Table: "oauth_auth_requests", Name: "scopes", Kind: "varchar", Extra: true},
		{Table: "oauth_auth_requests", Name: "state", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "nonce", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "code_challenge", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "code_challenge_method", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "min_auth_time", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "oauth_auth_requests", Name: "force_consent", Kind: "boolean", Extra: true},
		{Table: "oauth_auth_requests", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "oauth_auth_requests", Name: "expires_at", Kind: "timestamp", Extra: true},

		{Table: "oauth_codes", Name: "id", Kind: "uuid", PK: true, Extra: true},
		{Table: "oauth_codes", Name: "code_digest", Kind: "varchar", Extra: true},
		{Table: "oauth_codes", Name: "client_id", Kind: "varchar", Extra: true},
		{Table: "oauth_codes", Name: "user_id", Kind: "uuid", Extra: true},
		{Table: "oauth_codes", Name: "session_id", Kind: "uuid", Extra: true},
		{Table: "oauth_codes", Name: "redirect_uri", Kind: "varchar", Extra: true},
		{Table: "oauth_codes", Name: "code_challenge", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_codes", Name: "code_challenge_method", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_codes", Name: "nonce", Kind: "varchar", Nullable: true, Extra: true},
		{Table: "oauth_codes", Name: "scopes", Kind: "varchar", Extra: true},
		{Table: "oauth_codes", Name: "auth_time", Kind: "timestamp", Extra: true},
		{Table: "oauth_codes", Name: "amr", Kind: "varchar", Extra: true},
		{Table: "oauth_codes", Name: "created_at", Kind: "timestamp", Extra: true},
		{Table: "oauth_codes", Name: "expires_at", Kind: "timestamp", Extra: true},
		{Table: "oauth_codes", Name: "used_at", Kind: "timestamp", Nullable: true, Extra: true},
		{Table: "oauth_codes", Name: "issued_session_id", Kind: "uuid", Nullable: true, Extra: true},
	},
	Indexes: []Index{
		{Table: "users", Name: "ix_users_email", Columns: "email", Unique: true},
		{Table: "users", Name: "ix_users_account_status", Columns: "account_status"},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_jti", Columns: "jti", Unique: true},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_user_id", Columns: "user_id"},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_expires_at", Columns: "expires_at"},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_revoked", Columns: "revoked"},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_token_value", Columns: "token_value", Unique: true},
		{Table: "jwt_tokens", Name: "ix_jwt_tokens_session_id", Columns: "session_id"},
		{Table: "verification_tokens", Name: "ix_verification_tokens_token", Columns: "token", Unique: true},
		{Table: "verification_tokens", Name: "ix_verification_tokens_user_id", Columns: "user_id"},
		{Table: "verification_tokens", Name: "ix_verification_tokens_expires_at", Columns: "expires_at"},
		{Table: "security_logs", Name: "ix_security_logs_event_type", Columns: "event_type"},
		{Table: "security_logs", Name: "ix_security_logs_user_id", Columns: "user_id"},
		{Table: "security_logs", Name: "ix_security_logs_timestamp", Columns: "timestamp"},
		{Table: "sessions", Name: "ix_sessions_user_id", Columns: "user_id"},
		{Table: "sessions", Name: "ix_sessions_expires_at", Columns: "expires_at"},
		{Table: "sessions", Name: "ix_sessions_revoked_at", Columns: "revoked_at"},
		{Table: "sessions", Name: "ix_sessions_client_id", Columns: "client_id"},
		{Table: "sessions", Name: "ix_sessions_browser_digest", Columns: "browser_digest", Unique: true},
		{Table: "mail_outbox", Name: "ix_mail_outbox_due", Columns: "next_attempt_at"},
		{Table: "mail_outbox", Name: "ix_mail_outbox_user_id", Columns: "user_id"},
		{Table: "mfa_factors", Name: "ix_mfa_factors_user_id_kind", Columns: "user_id,kind", Unique: true},
		{Table: "mfa_recovery_codes", Name: "ix_mfa_recovery_codes_user_id_code_digest", Columns: "user_id,code_digest", Unique: true},
		{Table: "mfa_challenges", Name: "ix_mfa_challenges_token", Columns: "token", Unique: true},
		{Table: "mfa_challenges", Name: "ix_mfa_challenges_user_id", Columns: "user_id"},
		{Table: "mfa_challenges", Name: "ix_mfa_challenges_expires_at", Columns: "expires_at"},
		{Table: "revocation_events", Name: "ix_revocation_events_expires_at", Columns: "expires_at"},
		{Table: "passkeys", Name: "ix_passkeys_credential_id", Columns: "credential_id", Unique: true},
		{Table: "passkeys", Name: "ix_passkeys_user_id", Columns: "user_id"},
		{Table: "webauthn_challenges", Name: "ix_webauthn_challenges_challenge", Columns: "challenge", Unique: true},
		{Table: "webauthn_challenges", Name: "ix_webauthn_challenges_user_id", Columns: "user_id"},
		{Table: "webauthn_challenges", Name: "ix_webauthn_challenges_mfa_challenge_id", Columns: "mfa_challenge_id"},
		{Table: "webauthn_challenges", Name: "ix_webauthn_challenges_expires_at", Columns: "expires_at"},
		{Table: "oauth_consents", Name: "ix_oauth_consents_user_id_client_id", Columns: "user_id,client_id", Unique: true},
		{Table: "oauth_consents", Name: "ix_oauth_consents_client_id", Columns: "client_id"},
		{Table: "oauth_auth_requests", Name: "ix_oauth_auth_requests_client_id", Columns: "client_id"},
		{Table: "oauth_auth_requests", Name: "ix_oauth_auth_requests_expires_at", Columns: "expires_at"},
		{Table: "oauth_codes", Name: "ix_oauth_codes_code_digest", Columns: "code_digest", Unique: true},
		{Table: "oauth_codes", Name: "ix_oauth_codes_client_id", Columns: "client_id"},
		{Table: "oauth_codes", Name: "ix_oauth_codes_user_id", Columns: "user_id"},
		{Table: "oauth_codes", Name: "ix_oauth_codes_session_id", Columns: "session_id"},
		{Table: "oauth_codes", Name: "ix_oauth_codes_issued_session_id", Columns: "issued_session_id"},
		{Table: "oauth_codes", Name: "ix_oauth_codes_expires_at", Columns: "expires_at"},
	},
	ForeignKeys: []ForeignKey{
		{Table: "jwt_tokens", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "jwt_tokens", Column: "session_id", RefTable: "sessions", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "verification_tokens", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "security_logs", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "SET NULL"},
		{Table: "sessions", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "mail_outbox", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "SET NULL"},
		{Table: "mfa_factors", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "mfa_recovery_codes", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "mfa_challenges", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "passkeys", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "webauthn_challenges", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "webauthn_challenges", Column: "mfa_challenge_id", RefTable: "mfa_challenges", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_consents", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_consents", Column: "client_id", RefTable: "oauth_clients", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_auth_requests", Column: "client_id", RefTable: "oauth_clients", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_codes", Column: "client_id", RefTable: "oauth_clients", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_codes", Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_codes", Column: "session_id", RefTable: "sessions", RefColumn: "id", OnDelete: "CASCADE"},
		{Table: "oauth_codes", Column: "issued_session_id", RefTable: "sessions", RefColumn: "id", OnDelete: "SET NULL"},
	},
}
