// Package main is the pyexec-keys command: it makes API keys for the gateway
// and hashes them (README "API keys and quotas"). The gateway stores only a
// key's SHA-256; this tool prints the key once, for the client, and the line
// for the keys file.
//
//	pyexec-keys new NAME [rate=Q/W] [concurrency=N]
//	    prints a new random key on stdout and its keys-file line on stderr
//	pyexec-keys hash [NAME]
//	    reads a key from stdin (one line) and prints its SHA-256 in hex, or
//	    the line "NAME:sha256hex" when NAME is given
//
// The hash is plain SHA-256 of the key's bytes, so `printf %s "$KEY" |
// sha256sum` gives the same digits.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/python-executor/python-executor/gateway/keyline"
)

// keyPrefix marks a string as a python-executor key, so that secret
// scanners and people can tell it apart from other tokens.
const keyPrefix = "pyx_"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pyexec-keys new NAME [rate=Q/W] [concurrency=N]")
	fmt.Fprintln(w, "       pyexec-keys hash [NAME]   (reads the key from stdin)")
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "new":
		if len(args) < 2 || !keyline.ValidName(args[1]) {
			fmt.Fprintln(stderr, "pyexec-keys: new needs a NAME: "+keyline.NameRule)
			return 2
		}
		// The settings as the gateway reads them: a line printed here must
		// be a line the gateway loads, not one that stops its next reload.
		var p keyline.Policy
		for _, opt := range args[2:] {
			if err := keyline.ApplySetting(&p, opt); err != nil {
				fmt.Fprintln(stderr, "pyexec-keys:", err)
				return 2
			}
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintln(stderr, "pyexec-keys:", err)
			return 1
		}
		key := keyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
		line := strings.Join(append([]string{args[1] + ":" + digest(key)}, args[2:]...), " ")
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "pyexec-keys: give the key above to its client (it is stored nowhere); add this line to the keys file:\n%s\n", line)
		return 0
	case "hash":
		if len(args) > 2 || (len(args) == 2 && !keyline.ValidName(args[1])) {
			usage(stderr)
			return 2
		}
		key, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintln(stderr, "pyexec-keys:", err)
			return 1
		}
		key = strings.TrimRight(key, "\r\n")
		if key == "" {
			fmt.Fprintln(stderr, "pyexec-keys: no key on stdin")
			return 2
		}
		if len(args) == 2 {
			fmt.Fprintf(stdout, "%s:%s\n", args[1], digest(key))
		} else {
			fmt.Fprintln(stdout, digest(key))
		}
		return 0
	default:
		usage(stderr)
		return 2
	}
}

func digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}
