package web

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Every list of the API is paged the same way: ?limit= items at most
// (each list has a default and a maximum), ?cursor= to continue after the
// page that returned it. A list's items are ordered by a sort key made
// of their own fields (an id, a time), never by position, and a cursor
// holds the key of the last item sent: the next page starts after that
// key, so a walk returns every item that exists throughout it exactly
// once, whatever is added or removed meanwhile.
//
// A cursor is sealed (AES-GCM, a key drawn when the server starts): it
// is opaque (a ranking's cursor names an enterprise an enterprise token
// may not see), an altered one is refused, and so is one issued for
// another list or other filters. A cursor does not outlive a restart.

// Page ends every list answer: embed it.
type Page struct {
	// HasMore: there are items after this page; NextCursor continues
	// after it (absent on the last page).
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// page is what a request asks of a list: how many items and after which.
type page struct {
	list  string    // the list and its filters: a cursor of another is refused
	limit int       // at most this many items
	after []string  // sort key of the last item sent; nil: the first page
	at    time.Time // when the walk started: a time-dependent order (overdue cases) or a default period (events, history) keeps to it
}

// Default and maximum page sizes.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// paged adds the limit and cursor parameters to a list's route's ps.
func paged(def, max int, ps []param) []param {
	return append(ps,
		param{name: "limit", in: "query", typ: "integer", desc: fmt.Sprintf("at most this many items (default %d, at most %d)", def, max)},
		param{name: "cursor", in: "query", desc: "the next_cursor of the previous page (opaque; absent: the first page)"})
}

// pageOf reads a list's limit and cursor. list names the list and the
// filters its items depend on.
func (s *server) pageOf(c *gin.Context, list string, def, max int) (page, error) {
	limit, err := intParam(c, "limit", def, 1, max)
	if err != nil {
		return page{}, err
	}
	p := page{list: list, limit: limit, at: s.now()}
	v := c.Query("cursor")
	if v == "" {
		return p, nil
	}
	cur, ok := s.openCursor(v)
	if !ok {
		return page{}, errorf(http.StatusBadRequest, codeBadRequest, "cursor: not a cursor this server issued (altered, or from before a restart); start again without cursor")
	}
	if cur.List != list {
		return page{}, errorf(http.StatusBadRequest, codeBadRequest, "cursor: it continues another list or other filters; pass the same filters as the first page, or start again without cursor")
	}
	p.after, p.at = cur.Key, time.Unix(0, cur.At)
	return p, nil
}

// cursor is what a sealed cursor holds.
type cursor struct {
	List string   `json:"l"`
	Key  []string `json:"k"`
	At   int64    `json:"t"`
}

// newCursorAEAD returns the cipher that seals the cursors: keyed from
// secret when it is set, so that every replica sharing it (and the same
// replica after a restart) opens the others' cursors, else at random.
func newCursorAEAD(secret string) cipher.AEAD {
	key := make([]byte, 32)
	if secret == "" {
		rand.Read(key) // never fails (crypto/rand)
	} else {
		var err error
		key, err = hkdf.Key(sha256.New, []byte(secret), nil, "cleanprod list cursor v1", 32)
		if err != nil {
			panic(err) // 32 bytes of SHA-256 never fail
		}
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

func (s *server) sealCursor(cur cursor) string {
	plain, _ := json.Marshal(cur)
	nonce := make([]byte, s.cursors.NonceSize(), s.cursors.NonceSize()+len(plain)+s.cursors.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.cursors.Seal(nonce, nonce, plain, nil))
}

func (s *server) openCursor(v string) (cursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) < s.cursors.NonceSize() {
		return cursor{}, false
	}
	plain, err := s.cursors.Open(nil, b[:s.cursors.NonceSize()], b[s.cursors.NonceSize():], nil)
	if err != nil {
		return cursor{}, false
	}
	var cur cursor
	if json.Unmarshal(plain, &cur) != nil {
		return cursor{}, false
	}
	return cur, true
}

// paginate orders items by key and returns those after p's cursor, at
// most p.limit, with the page's end. Keys compare part by part as
// strings (keyTime and keyDesc make times and reversed orders compare
// so); items with equal keys would be one item to the cursor, so a key
// ends with an id.
func paginate[T any](s *server, p page, items []T, key func(T) []string) ([]T, Page) {
	type keyed struct {
		item T
		key  []string
	}
	ks := make([]keyed, len(items))
	for i, it := range items {
		ks[i] = keyed{it, key(it)}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return slices.Compare(a.key, b.key) })
	start := 0
	if p.after != nil {
		start, _ = slices.BinarySearchFunc(ks, p.after, func(k keyed, after []string) int {
			return cmp.Or(slices.Compare(k.key, after), -1) // equal sorts before: the page starts after it
		})
	}
	end := min(start+p.limit, len(ks))
	out := make([]T, 0, end-start)
	for _, k := range ks[start:end] {
		out = append(out, k.item)
	}
	var pg Page
	if end < len(ks) {
		pg = Page{HasMore: true, NextCursor: s.sealCursor(cursor{List: p.list, Key: ks[end-1].key, At: p.at.UnixNano()})}
	}
	return out, pg
}

// keyTime makes a time part of a sort key: it compares as the times do.
func keyTime(t time.Time) string {
	if t.IsZero() {
		return strings.Repeat("0", 20)
	}
	return fmt.Sprintf("%020d", uint64(t.UnixNano())+(1<<63))
}

// keyDesc reverses the order of a key part made by keyTime or keyNum.
func keyDesc(part string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '9' - r + '0'
		}
		return r
	}, part)
}

// keyNum makes a non-negative integer part of a sort key.
func keyNum(n int) string { return fmt.Sprintf("%020d", max(0, n)) }

// keyFlag makes a boolean part of a sort key: true first.
func keyFlag(b bool) string {
	if b {
		return "0"
	}
	return "1"
}
