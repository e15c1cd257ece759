package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Identity is who a session belongs to and what the API lets them do. The
// roles only decide which buttons a page offers; the API checks them again
// on every call.
type Identity struct {
	Name  string
	Roles map[string]bool
	// Scoped says the principal may touch only some plans.
	Scoped bool
}

// Can reports whether the identity holds role.
func (id Identity) Can(role string) bool { return id.Roles[role] }

// session is one signed-in browser. Immutable once made.
type session struct {
	id       string
	token    string // the bearer token it signed in with; "" without authentication
	identity Identity
	csrf     string
	expires  time.Time
}

const (
	sessionCookie = "aura_session"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 10000
)

// sessions holds the live sessions in memory: a restart signs everyone
// out, which is the safe side.
type sessions struct {
	mu   sync.Mutex // guards byID and order
	byID map[string]*session
	// order holds session ids oldest first: every session lives
	// sessionTTL, so the front expires first. Ended sessions' ids stay
	// until they reach the front or the queue is compacted.
	order []string
	now   func() time.Time // immutable
}

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, now: time.Now}
}

func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the runtime guarantees it does not
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// start makes a session, dropping expired ones (and, past maxSessions,
// the oldest) so that sign-ins cannot grow memory without bound.
func (s *sessions) start(token string, id Identity) *session {
	sess := &session{id: randomID(), token: token, identity: id, csrf: randomID(), expires: s.now().Add(sessionTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for len(s.order) > 0 {
		front := s.byID[s.order[0]]
		if front != nil && !now.After(front.expires) && len(s.byID) < maxSessions {
			break
		}
		delete(s.byID, s.order[0])
		s.order = s.order[1:]
	}
	if len(s.order) > 2*maxSessions {
		live := make([]string, 0, len(s.byID))
		for _, k := range s.order {
			if s.byID[k] != nil {
				live = append(live, k)
			}
		}
		s.order = live
	}
	s.byID[sess.id] = sess
	s.order = append(s.order, sess.id)
	return sess
}

func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[c.Value]
	if sess == nil {
		return nil
	}
	if s.now().After(sess.expires) {
		delete(s.byID, sess.id)
		return nil
	}
	return sess
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// validCSRF reports whether got is the session's CSRF token.
func (sess *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}
