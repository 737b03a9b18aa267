package store

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Keyset cursors are opaque to clients: base64url of "<time ms>:<key>" of
// the last row of a page, where key breaks ties between rows of the same
// time (an exec_id, or a rowid the API does not show otherwise).
func encodeCursor(at int64, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + ":" + key))
}

// decodeCursor parses a cursor of encodeCursor; kind names the list in the
// error.
func decodeCursor(kind, c string) (int64, string, error) {
	bad := invalid("malformed %s cursor %q: pass back the next of the previous page", kind, c)
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", bad
	}
	atStr, key, ok := strings.Cut(string(b), ":")
	at, err := strconv.ParseInt(atStr, 10, 64)
	if !ok || err != nil || key == "" {
		return 0, "", bad
	}
	return at, key, nil
}
