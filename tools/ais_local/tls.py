"""A throw-away CA and one server certificate for every node (127.0.0.1 / localhost), made with the
openssl command-line tool. The CA's key stays in the state folder and dies with `stop --wipe`."""

from .common import find_tool, run_quiet

DAYS = "30"


def make_certs(tls_dir):
    """Create ca.crt, node.crt and node.key under tls_dir; return their paths."""
    openssl = find_tool("openssl", hint="it makes the certificates for --tls")
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = tls_dir / "ca.key", tls_dir / "ca.crt"
    key, csr, crt = tls_dir / "node.key", tls_dir / "node.csr", tls_dir / "node.crt"
    ext = tls_dir / "node.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run_quiet([openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", DAYS,
               "-subj", "/CN=ais-local test CA",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "openssl (CA)")
    run_quiet([openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
              "openssl (node key)")
    run_quiet([openssl, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
               "-out", crt, "-days", DAYS, "-extfile", ext], "openssl (node certificate)")
    for f in (ca_key, key):
        f.chmod(0o600)
    return {"ca": ca_crt, "crt": crt, "key": key}


def paths(tls_dir):
    return {"ca": tls_dir / "ca.crt", "crt": tls_dir / "node.crt", "key": tls_dir / "node.key"}
