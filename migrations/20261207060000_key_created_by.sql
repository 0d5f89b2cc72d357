-- Who created each key, as the provider names them (#18, `keywatch keys`): `user:ID` or
-- `service_account:ID` (Anthropic `created_by`), `user:EMAIL` or `service_account:NAME`
-- (OpenAI `owner`); NULL where the provider gives none.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
