"""ACME (RFC 8555): the server TrustChain runs under /acme/ on its HTTPS edge."""
