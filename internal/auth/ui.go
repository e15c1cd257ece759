package auth

// Authenticate finds the principal holding a bearer token, for callers
// outside gRPC (the web UI's sign-in): the tokens file's principal,
// compared in constant time, or, when authentication is off, the anonymous
// principal whatever the token.
func (g *Guard) Authenticate(token string) (*Principal, bool) {
	reg := g.reg.Load()
	if reg == nil {
		return anonymous(AnonymousName), true
	}
	return reg.ByToken(token)
}

// AuthOn reports whether the guard asks for credentials.
func (g *Guard) AuthOn() bool { return g.authOn }
