// Package auth decides who is calling aurad and what they may do: it loads
// the tokens file (hashed bearer tokens and client-certificate principals,
// each with roles and an optional plan allowlist), authenticates every RPC,
// authorizes it by role and plan, and enforces per-principal rate, stream
// and hook-subscriber limits, all as gRPC interceptors.
package auth
