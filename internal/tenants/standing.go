// Package tenants knows which tenants may be vended for: the allow-list and
// file of the registry, and a tenant store in DynamoDB whose items say
// whether a tenant is active or suspended. Every replica keeps the store in
// memory; a poll of the store, and notices through Redis, carry a change to
// every replica within seconds, and a change drops the tenant's cached
// credentials.
package tenants

import (
	"crypto/sha256"
	"encoding/hex"
)

// Standing is what the directory says of a tenant.
type Standing int

// Standings.
const (
	Active    Standing = iota // known, and may be vended for
	Unknown                   // in no allow-list, file or store
	Suspended                 // cut off by an operator
	Unsettled                 // changed, and the store cannot say how yet
)

func (s Standing) String() string {
	switch s {
	case Active:
		return "active"
	case Unknown:
		return "unknown"
	case Suspended:
		return "suspended"
	default:
		return "unsettled"
	}
}

// Group names what is kept per tenant in the cache and in Redis: the
// credential cache's key group, the Redis hash tag of the tenant's entries
// and revision, the subject of a notice. It is a hash, so that Redis holds
// no tenant id.
func Group(tenant string) string {
	h := sha256.Sum256([]byte("tokenvendor tenant\x00" + tenant))
	return hex.EncodeToString(h[:12])
}
