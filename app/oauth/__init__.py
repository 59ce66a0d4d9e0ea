"""OAuth 2.0 for SCIM clients: the client credentials grant (RFC 6749 §4.4) issuing short-lived
JWT access tokens (RFC 9068), signed with keys kept in the database (`keys`), verified on every
SCIM request without a query (`access_tokens`), and the token endpoint with its metadata
(`endpoint`)."""
