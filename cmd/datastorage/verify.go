package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/integrity"
)

// errVerifyFailed is returned when an export does not verify; the details
// are printed already.
var errVerifyFailed = errors.New("verify-export: the export did not verify")

// cmdVerifyExport checks an export file offline (CONTRACT §8): its
// signature, with the service's public key, and every hash chain in it.
// It needs no database nor config.
func cmdVerifyExport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify-export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubFlag := fs.String("public-key", "", "the export signing public key: a file (PEM or raw) or the key inline (base64 or hex)")
	hmacFile := fs.String("hmac-key-file", "", "the service's integrity.hmacKeyFile, when its chains use HMAC-SHA256")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage verify-export FILE --public-key KEY [--hmac-key-file FILE]")
		fs.PrintDefaults()
	}
	// The file may come before or after the flags.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) != 1 || *pubFlag == "" {
		fs.Usage()
		return errUsage
	}
	pub, err := readPublicKey(*pubFlag)
	if err != nil {
		return fmt.Errorf("verify-export: --public-key: %w", err)
	}
	var hasher audit.Hasher
	if *hmacFile != "" {
		key, err := os.ReadFile(*hmacFile)
		if err != nil {
			return fmt.Errorf("verify-export: --hmac-key-file: %w", err)
		}
		// Read as the service reads integrity.hmacKeyFile.
		hasher = audit.NewHasher(bytes.TrimRight(key, "\r\n"))
	}
	f, err := os.Open(files[0])
	if err != nil {
		return fmt.Errorf("verify-export: %w", err)
	}
	defer f.Close()
	rep, err := integrity.VerifyExport(f, pub, hasher)
	if err != nil {
		return fmt.Errorf("verify-export: %s: %w", files[0], err)
	}
	printFileReport(stdout, files[0], rep)
	if !rep.OK() {
		return errVerifyFailed
	}
	return nil
}

// readPublicKey reads --public-key: a file holding the key, or the key.
func readPublicKey(v string) ([]byte, error) {
	data, err := os.ReadFile(v)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		data = []byte(v)
	}
	return integrity.ParsePublicKey(data)
}

func printFileReport(w io.Writer, name string, rep *integrity.FileReport) {
	m := rep.Metadata
	fmt.Fprintf(w, "export: %s (%s), %d event(s) in %d chain(s)", name, rep.Format, rep.Events, rep.Chains)
	if m.ExportedBy != "" {
		fmt.Fprintf(w, ", exported %s by %s", m.ExportTimestamp, m.ExportedBy)
	}
	fmt.Fprintln(w)
	if rep.SignatureValid {
		fmt.Fprintf(w, "signature: valid (%s)\n", m.SignatureAlgorithm)
	} else {
		fmt.Fprintf(w, "signature: INVALID: %s\n", rep.SignatureError)
		if rep.KeyMismatch {
			fmt.Fprintf(w, "  the file was signed with public key %s, not the one given\n", m.PublicKey)
		}
	}
	if rep.BrokenCount == 0 {
		fmt.Fprintf(w, "hash chains: valid (%d link(s) checked)\n", rep.Events)
	} else {
		fmt.Fprintf(w, "hash chains: %d broken link(s):\n", rep.BrokenCount)
		for _, b := range rep.Broken {
			fmt.Fprintf(w, "  event %s (correlation chain_seq %d): %s\n", b.EventID, b.ChainSeq, b.Message)
		}
		if rep.BrokenCount > int64(len(rep.Broken)) {
			fmt.Fprintf(w, "  … and %d more\n", rep.BrokenCount-int64(len(rep.Broken)))
		}
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}

// newSigner returns the export signer of integrity.signingKeyFile, or an
// ephemeral one (logged loudly) when none is configured.
func newSigner(cfg config.Config, log *slog.Logger) (*integrity.Signer, error) {
	if len(cfg.Integrity.SigningKey) == 0 {
		s, err := integrity.GenerateSigner()
		if err != nil {
			return nil, err
		}
		log.Warn("integrity.signingKeyFile is not set: exports are signed with a key generated at start, "+
			"which cannot verify them after a restart; keep this public key to verify them",
			"public_key", s.PublicKeyString())
		return s, nil
	}
	key, err := integrity.ParsePrivateKey(cfg.Integrity.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("config: integrity.signingKeyFile: %w", err)
	}
	s := integrity.NewSigner(key)
	log.Info("exports are signed", "algorithm", integrity.SignatureAlgorithm, "public_key", s.PublicKeyString())
	return s, nil
}
