"""Four independent X.509 verifiers, driven as subprocesses: OpenSSL, GnuTLS, NSS and
Go's crypto/x509, each asked to check a chain for TLS server use and, where it can,
to complete a TLS handshake with a server and check the certificate it is sent.

Each check returns a ``Verdict``: whether the verifier accepted, and what it printed
(kept for the assertion message, so a refusal names its reason). The Go checker is a
few lines of standard-library Go, compiled once per session; no network is used.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

VERIFIERS = ("openssl", "gnutls", "nss", "go")
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
REQUEST = "GET /health HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n"

GO_SOURCE = """\
// verify ROOT INTERMEDIATES LEAF NAME | dial ROOT HOST:PORT NAME
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"time"
)

func pool(path string) *x509.CertPool {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		fail(fmt.Errorf("no certificate in %s", path))
	}
	return p
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	switch os.Args[1] {
	case "verify":
		data, err := os.ReadFile(os.Args[4])
		if err != nil {
			fail(err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			fail(fmt.Errorf("no PEM in %s", os.Args[4]))
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			fail(err)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: pool(os.Args[2]), Intermediates: pool(os.Args[3]), DNSName: os.Args[5],
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			fail(err)
		}
		fmt.Printf("OK: chain of %d\\n", len(chains[0]))
	case "dial":
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(dialer, "tcp", os.Args[3],
			&tls.Config{RootCAs: pool(os.Args[2]), ServerName: os.Args[4]})
		if err != nil {
			fail(err)
		}
		defer conn.Close()
		state := conn.ConnectionState()
		fmt.Printf("OK: TLS version %#04x, serial %x\\n", state.Version,
			state.PeerCertificates[0].SerialNumber)
	default:
		fail(fmt.Errorf("unknown command %s", os.Args[1]))
	}
}
"""


@dataclass(frozen=True)
class Verdict:
    verifier: str
    accepted: bool
    output: str

    def __str__(self) -> str:
        return f"{self.verifier} {'accepted' if self.accepted else 'refused'}:\n{self.output}"


@dataclass(frozen=True)
class ChainFiles:
    """PEM files: the trust anchor, the intermediate(s), the leaf; and the name to check."""

    root: Path
    intermediates: Path
    leaf: Path
    hostname: str

    @classmethod
    def write(
        cls, directory: Path, root_pem: str, chain_pem: str, leaf_pem: str, hostname: str
    ) -> ChainFiles:
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / n for n in ("root.pem", "intermediates.pem", "leaf.pem")]
        for path, text in zip(paths, (root_pem, chain_pem, leaf_pem), strict=True):
            path.write_text(text)
        return cls(*paths, hostname=hostname)


def _run(
    verifier: str,
    argv: list[str | Path | int],
    env: dict[str, str] | None = None,
    request: str = "",
    cwd: Path | None = None,
) -> Verdict:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        input=request,  # stdin: empty unless a request is given
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return Verdict(verifier, done.returncode == 0, (done.stdout + done.stderr).strip())


def build_go_checker(directory: Path) -> Path:
    """Compile GO_SOURCE with Debian's go into ``directory``; caches and HOME stay inside it."""
    source, binary = directory / "checker.go", directory / "checker"
    source.write_text(GO_SOURCE)
    env = {
        "HOME": str(directory), "GOCACHE": str(directory / "cache"),
        "GOPATH": str(directory / "gopath"), "GOPROXY": "off", "GOFLAGS": "",
        "GO111MODULE": "on", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
    }  # fmt: skip
    built = _run("go build", ["go", "build", "-o", binary, source], env, cwd=directory)
    if not built.accepted:
        raise RuntimeError(f"could not build the Go checker: {built.output}")
    return binary


class Verifiers:
    """Runs each verifier on chain files; ``work`` holds scratch NSS databases."""

    def __init__(self, work: Path, go_checker: Path) -> None:
        self.work, self.go_checker = work, go_checker
        self._databases = 0

    def nss_database(self, root: Path) -> str:
        """A throwaway NSS database that trusts ``root`` (and nothing else) for TLS servers."""
        self._databases += 1
        directory = self.work / f"nssdb-{self._databases}"
        directory.mkdir(parents=True)
        database = f"sql:{directory}"
        commands: list[list[str | Path | int]] = [
            ["certutil", "-N", "-d", database, "--empty-password"],
            ["certutil", "-A", "-d", database, "-n", "root", "-t", "C,,", "-a", "-i", root],
        ]
        for argv in commands:
            made = _run("certutil", argv)
            if not made.accepted:
                raise RuntimeError(f"certutil failed: {made.output}")
        return database

    def verify(self, verifier: str, files: ChainFiles) -> Verdict:
        """Is ``files.leaf`` a valid TLS server certificate for ``files.hostname``?"""
        f = files
        argv: list[str | Path | int]
        if verifier == "openssl":
            argv = ["openssl", "verify", "-CAfile", f.root, "-untrusted", f.intermediates,
                    "-purpose", "sslserver", "-verify_hostname", f.hostname, f.leaf]  # fmt: skip
        elif verifier == "gnutls":
            bundle = f.leaf.with_name(f"{f.leaf.stem}-and-intermediates.pem")
            bundle.write_text(f.leaf.read_text() + f.intermediates.read_text())
            argv = ["certtool", "--verify", "--load-ca-certificate", f.root, "--infile", bundle,
                    "--verify-hostname", f.hostname, "--verify-purpose", SERVER_AUTH,
                    "--verify-profile", "medium"]  # fmt: skip
        elif verifier == "nss":
            # vfychain checks the chain and the usage (1 = SSL server), not a host name
            argv = ["vfychain", "-d", self.nss_database(f.root), "-u", "1",
                    "-a", f.leaf, "-a", f.intermediates]  # fmt: skip
        elif verifier == "go":
            argv = [self.go_checker, "verify", f.root, f.intermediates, f.leaf, f.hostname]
        else:
            raise ValueError(verifier)
        return _run(verifier, argv)

    def handshake(self, verifier: str, root: Path, port: int, hostname: str) -> Verdict:
        """A TLS handshake with https://[::1]:port that must verify the server as ``hostname``.

        GnuTLS and NSS also send a GET /health (their clients wait for the server to close).
        """
        argv: list[str | Path | int]
        request = ""
        if verifier == "openssl":
            argv = ["openssl", "s_client", "-connect", f"[::1]:{port}", "-brief", "-CAfile", root,
                    "-verify_return_error", "-verify_hostname", hostname,
                    "-servername", hostname]  # fmt: skip
        elif verifier == "gnutls":
            argv = ["gnutls-cli", "--x509cafile", root, "-p", port, "--verify-hostname", hostname,
                    "::1"]  # fmt: skip
            request = REQUEST
        elif verifier == "nss":
            # tstclnt sends -a as SNI and checks the certificate against it. The request goes
            # in a file (-A): on a pipe tstclnt spins after EOF, and with -Q it waits for the
            # server to close the idle connection (5 s here)
            request_file = self.work / "request.http"
            request_file.write_text(REQUEST)
            argv = ["tstclnt", "-6", "-h", "::1", "-p", port, "-a", hostname,
                    "-d", self.nss_database(root), "-A", request_file]  # fmt: skip
        elif verifier == "go":
            argv = [self.go_checker, "dial", root, f"[::1]:{port}", hostname]
        else:
            raise ValueError(verifier)
        return _run(verifier, argv, request=request)
