package integrity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// SignatureAlgorithm names how exports are signed: Ed25519ph (RFC 8032
// §5.1, "HashEdDSA"): Ed25519 over the SHA-512 digest of the signed bytes,
// with an empty context. The pre-hash is what lets an export of any size be
// signed while it streams; Go's crypto/ed25519 verifies it with
// ed25519.VerifyWithOptions(pub, sha512(bytes), sig, &ed25519.Options{Hash: crypto.SHA512}).
const SignatureAlgorithm = "ed25519ph"

var phOptions = &ed25519.Options{Hash: crypto.SHA512}

// Signer signs exports with an Ed25519 private key.
type Signer struct {
	key ed25519.PrivateKey
	// Ephemeral is true for a key generated at start (no key file
	// configured): its exports cannot be verified after a restart.
	Ephemeral bool
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// GenerateSigner returns a Signer with a fresh random key.
func GenerateSigner() (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("integrity: generate signing key: %w", err)
	}
	return &Signer{key: key, Ephemeral: true}, nil
}

// PublicKey returns the public key that verifies this signer's exports.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// PublicKeyString is the public key as base64 of its 32 bytes, the form
// datastorage verify-export --public-key accepts inline.
func (s *Signer) PublicKeyString() string { return base64.StdEncoding.EncodeToString(s.PublicKey()) }

// PublicKeyPEM is the public key as a PEM "PUBLIC KEY" (PKIX) block.
func (s *Signer) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(s.PublicKey())
	if err != nil {
		return "" // an ed25519.PublicKey always marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// signingHash accumulates the signed bytes of an export.
type signingHash struct {
	hash.Hash
	n int64
}

func newSigningHash() *signingHash { return &signingHash{Hash: sha512.New()} }

func (h *signingHash) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.Hash.Write(p)
}

// sign signs the digest of the bytes written to h, base64 (standard).
func (s *Signer) sign(h *signingHash) (string, error) {
	sig, err := s.key.Sign(nil, h.Sum(nil), phOptions)
	if err != nil {
		return "", fmt.Errorf("integrity: sign export: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// verifySignature checks a base64 signature over the bytes written to h.
func verifySignature(pub ed25519.PublicKey, h *signingHash, signature string) error {
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	if err := ed25519.VerifyWithOptions(pub, h.Sum(nil), sig, phOptions); err != nil {
		return errors.New("signature does not match the exported events: the file was changed or signed with another key")
	}
	return nil
}

// ParsePrivateKey reads an Ed25519 private key: a PEM "PRIVATE KEY" block
// (PKCS #8, as `openssl genpkey -algorithm ed25519` writes), or the 32-byte
// seed raw, in hex or in base64.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("PEM block %q is not a PKCS #8 \"PRIVATE KEY\"", block.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKCS #8 key: %w", err)
		}
		key, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is a %T, not an Ed25519 key", k)
		}
		return key, nil
	}
	seed, err := keyBytes(data, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("not a PEM private key nor a 32-byte seed (raw, hex or base64): %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ParsePublicKey reads an Ed25519 public key: a PEM "PUBLIC KEY" block
// (PKIX, as `openssl pkey -pubout` writes), or the 32 bytes raw, in hex or
// in base64.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %q is not a \"PUBLIC KEY\"", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKIX public key: %w", err)
		}
		key, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("the key is a %T, not an Ed25519 key", k)
		}
		return key, nil
	}
	b, err := keyBytes(data, ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("not a PEM public key nor 32 bytes (raw, hex or base64): %w", err)
	}
	return ed25519.PublicKey(b), nil
}

// keyBytes reads size bytes given raw, in hex or in base64 (standard or
// URL, padded or not), ignoring surrounding white space and quotes in the
// text forms.
func keyBytes(data []byte, size int) ([]byte, error) {
	if len(data) == size {
		return bytes.Clone(data), nil
	}
	// Quotes too: keys are copied from log lines.
	text := strings.Trim(string(bytes.TrimSpace(data)), `"'`)
	if b, err := hex.DecodeString(text); err == nil && len(b) == size {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil && len(b) == size {
			return b, nil
		}
	}
	return nil, fmt.Errorf("expected %d bytes", size)
}

// SignBytes signs b (Ed25519ph, as exports are signed) and returns the
// signature in base64: what the archive signs its manifests with, so one key
// and one verification (VerifyBytes) serve exports and archives.
func (s *Signer) SignBytes(b []byte) (string, error) {
	h := newSigningHash()
	h.Write(b)
	return s.sign(h)
}

// VerifyBytes checks a base64 signature of SignBytes over b with pub.
func VerifyBytes(pub ed25519.PublicKey, b []byte, signature string) error {
	h := newSigningHash()
	h.Write(b)
	return verifySignature(pub, h, signature)
}
