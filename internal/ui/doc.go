// Package ui is aurad's web UI: server-rendered pages (html/template), a
// small embedded script for live updates, and a Server-Sent Events stream fed
// by the event log. It reaches the core only through Core, which aurad fills
// with the same gRPC service the API serves (in process), so validation,
// idempotency, roles and limits are the API's own; the UI adds sessions and
// CSRF tokens in front of it and keeps no rule of its own.
package ui
