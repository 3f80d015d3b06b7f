package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/seal"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func ring(t *testing.T, keys ...[]byte) *seal.Keyring {
	t.Helper()
	r, err := seal.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpen(t *testing.T) {
	r := ring(t, testKey(1))
	secret := []byte(`{"SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}`)
	sealed, err := r.Seal(secret, []byte("tokenvendor:{abc}"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("wJalrXUtnFEMI")) || bytes.Contains(sealed, []byte("SecretAccessKey")) {
		t.Fatal("plaintext readable in the sealed value")
	}
	got, err := r.Open(sealed, []byte("tokenvendor:{abc}"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := r.Seal(secret, []byte("tokenvendor:{abc}"))
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: the nonce does not change")
	}
}

func TestOpenRefuses(t *testing.T) {
	r := ring(t, testKey(1))
	ad := []byte("tokenvendor:{abc}")
	sealed, _ := r.Seal([]byte("credentials"), ad)
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	for _, tc := range []struct {
		name   string
		sealed []byte
		ad     string
		want   error
	}{
		{name: "moved under another name", sealed: sealed, ad: "tokenvendor:{abd}", want: seal.ErrCorrupt},
		{name: "ciphertext altered", sealed: flip(len(sealed) - 1), ad: string(ad), want: seal.ErrCorrupt},
		{name: "nonce altered", sealed: flip(10), ad: string(ad), want: seal.ErrCorrupt},
		{name: "key id altered", sealed: flip(0), ad: string(ad), want: seal.ErrUnknownKey},
		{name: "truncated", sealed: sealed[:20], ad: string(ad), want: seal.ErrCorrupt},
		{name: "empty", sealed: nil, ad: string(ad), want: seal.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Open(tc.sealed, []byte(tc.ad)); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	ad := []byte("k")
	old := ring(t, testKey(1))
	sealedOld, _ := old.Seal([]byte("old"), ad)

	rotated := ring(t, testKey(2), testKey(1))
	if got, err := rotated.Open(sealedOld, ad); err != nil || string(got) != "old" {
		t.Fatalf("a value sealed with the old key does not open after rotation: %q %v", got, err)
	}
	sealedNew, _ := rotated.Seal([]byte("new"), ad)
	if _, err := old.Open(sealedNew, ad); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("the new first key did not seal: old ring opened it (%v)", err)
	}

	retired := ring(t, testKey(2))
	if _, err := retired.Open(sealedOld, ad); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("a value sealed with a removed key opened: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(testKey(7))
	short := base64.StdEncoding.EncodeToString(testKey(7)[:16])
	for _, tc := range []struct {
		name, file string
		keys       int
		wantErr    string
	}{
		{name: "one key", file: good + "\n", keys: 1},
		{name: "comments and blank lines", file: "# new\n" + good + "\n\n# old\n" + base64.StdEncoding.EncodeToString(testKey(8)) + "\n", keys: 2},
		{name: "empty", file: "\n# nothing\n", wantErr: "no key"},
		{name: "16-byte key", file: good + "\n" + short + "\n", wantErr: "line 2: a key is 32 bytes, this one 16"},
		{name: "not base64", file: "not-base64!\n", wantErr: "line 1: not base64"},
		{name: "duplicate", file: good + "\n" + good + "\n", wantErr: "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := seal.LoadKeyFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), good) {
					t.Fatal("the error shows a key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != tc.keys {
				t.Fatalf("LoadKeyFile read %d keys, want %d", r.Len(), tc.keys)
			}
		})
	}
}
