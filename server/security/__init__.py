"""Transport security and caller authentication (docs/contract.md, Security).

- `tls`: server and channel credentials from PEM files, and the rule that plaintext (and
  unauthenticated) listening is for loopback only unless explicitly overridden.
- `auth`: who is calling, from a verified client certificate or a bearer token checked against a file of
  token hashes; plugs into the servicer as its `ClientIdentifier`.
- `setup`: what the composition root calls (credentials, identifier, the start-up check).
- `devcerts`: a local CA, server and client certificates for development and tests.

Nothing here logs or echoes a token, a private key or any other secret.
"""
