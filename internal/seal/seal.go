// Package seal encrypts values with AES-256-GCM under a ring of keys: the
// first key seals, every key opens, so keys rotate without losing what was
// sealed before. A sealed value is
//
//	key id (8 bytes) | nonce (12 bytes) | ciphertext and tag
//
// and is bound to additional data (the name it is stored under), so a value
// moved under another name fails to open. The key id is a hash of the key,
// not its position, so it stays the same when a new first key is added.
package seal

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

const (
	idSize    = 8
	nonceSize = 12
	overhead  = idSize + nonceSize + 16 // the GCM tag
)

// Reasons a value does not open.
var (
	ErrUnknownKey = errors.New("sealed with a key not in the key ring")
	ErrCorrupt    = errors.New("sealed value does not open: altered, truncated or bound to another name")
)

// Keyring holds the keys. It is safe for concurrent use.
type Keyring struct {
	keys []key
}

type key struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// LoadKeyFile reads keys from a file: base64 of 32 bytes, one a line; blank
// lines and lines starting with # are ignored. Errors name the line, never
// its content.
func LoadKeyFile(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	return ParseKeys(b)
}

// ParseKeys reads keys in the format of LoadKeyFile.
func ParseKeys(b []byte) (*Keyring, error) {
	var raw [][]byte
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: not base64", n))
			continue
		}
		if len(k) != KeySize {
			errs = append(errs, fmt.Errorf("line %d: a key is %d bytes, this one %d", n, KeySize, len(k)))
			continue
		}
		raw = append(raw, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	if len(errs) == 0 && len(raw) == 0 {
		errs = append(errs, errors.New("no key"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return New(raw...)
}

// New returns a key ring of 32-byte keys; the first seals.
func New(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	r := &Keyring{}
	seen := map[[idSize]byte]bool{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("key %d: %d bytes, want %d", i+1, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := keyID(k)
		if seen[id] {
			return nil, fmt.Errorf("key %d: listed twice", i+1)
		}
		seen[id] = true
		r.keys = append(r.keys, key{id: id, aead: aead})
	}
	return r, nil
}

// keyID names a key without revealing it: a hash with a label of its own,
// so it is no hash of the key used anywhere else.
func keyID(k []byte) [idSize]byte {
	h := sha256.New()
	h.Write([]byte("tokenvendor seal key id\x00"))
	h.Write(k)
	var id [idSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Equal reports whether r and o hold the same keys in the same order.
func (r *Keyring) Equal(o *Keyring) bool {
	if r == nil || o == nil {
		return r == o
	}
	if len(r.keys) != len(o.keys) {
		return false
	}
	for i := range r.keys {
		if r.keys[i].id != o.keys[i].id {
			return false
		}
	}
	return true
}

// Len is the number of keys.
func (r *Keyring) Len() int { return len(r.keys) }

// Seal encrypts plaintext with the first key, bound to ad.
func (r *Keyring) Seal(plaintext, ad []byte) ([]byte, error) {
	k := r.keys[0]
	out := make([]byte, idSize+nonceSize, overhead+len(plaintext))
	copy(out, k.id[:])
	if _, err := rand.Read(out[idSize:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return k.aead.Seal(out, out[idSize:idSize+nonceSize], plaintext, ad), nil
}

// Open decrypts a sealed value with the key it names, checking it is bound
// to ad. It fails with ErrUnknownKey or ErrCorrupt.
func (r *Keyring) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < overhead {
		return nil, ErrCorrupt
	}
	for _, k := range r.keys {
		if !bytes.Equal(k.id[:], sealed[:idSize]) {
			continue
		}
		pt, err := k.aead.Open(nil, sealed[idSize:idSize+nonceSize], sealed[idSize+nonceSize:], ad)
		if err != nil {
			return nil, ErrCorrupt
		}
		return pt, nil
	}
	return nil, ErrUnknownKey
}
