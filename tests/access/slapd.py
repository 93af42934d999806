"""A throw-away OpenLDAP server for the directory tests: Debian's slapd on 127.0.0.1 with a
slapd.conf and an mdb database in a temporary folder, a TLS certificate for StartTLS signed by a
test CA, and a few people loaded with ldap3."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3 import Connection, Server

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=portal,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret"
PEOPLE = f"ou=people,{SUFFIX}"

# username, first name, last name, e-mail, password
DIRECTORY_PEOPLE = [
    ("ann", "Ann", "Lee", "ann.lee@corp.example", "ann-directory-pw"),
    ("annika", "Annika", "Berg", "annika.berg@corp.example", "annika-directory-pw"),
    ("carl", "Carl", "Nilsson", "carl@corp.example", "carl-directory-pw"),
    ("nomail", "Noé", "Sans-Courriel", None, "nomail-directory-pw"),
]


def available() -> bool:
    return os.path.exists(SLAPD) and (SCHEMA / "inetorgperson.schema").exists()


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cryovault test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


@dataclass
class Slapd:
    url: str
    ca_file: Path
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(folder: Path) -> Slapd:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir()
    ca_file, cert_file, key_file = _certificates(folder)
    config = folder / "slapd.conf"
    config.write_text(f"""
include {SCHEMA}/core.schema
include {SCHEMA}/cosine.schema
include {SCHEMA}/nis.schema
include {SCHEMA}/inetorgperson.schema
modulepath {MODULES}
moduleload back_mdb
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
TLSCACertificateFile {ca_file}
TLSCertificateFile {cert_file}
TLSCertificateKeyFile {key_file}

database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {folder}/db
access to attrs=userPassword
  by anonymous auth
  by self write
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by * none
""")
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = (folder / "slapd.log").open("wb")
    process = subprocess.Popen([SLAPD, "-f", str(config), "-h", f"{url}/", "-d", "0"],
                               stdout=log, stderr=subprocess.STDOUT)
    server = Slapd(url, ca_file, process)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError("slapd exited: " + (folder / "slapd.log").read_text())
        try:
            connection = Connection(Server(url, connect_timeout=1), ROOT_DN, ROOT_PASSWORD,
                                    auto_bind=True)
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
    _load(connection)
    connection.unbind()
    return server


def _load(c: Connection) -> None:
    def add(dn: str, classes: list[str], attrs: dict) -> None:
        assert c.add(dn, classes, attrs), (dn, c.result)

    add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example Facility"})
    add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
    add(f"ou=services,{SUFFIX}", ["organizationalUnit"], {"ou": "services"})
    add(SERVICE_DN, ["organizationalRole", "simpleSecurityObject"],
        {"cn": "portal", "userPassword": _ssha(SERVICE_PASSWORD)})
    for uid, first, last, mail, password in DIRECTORY_PEOPLE:
        attrs = {"uid": uid, "cn": f"{first} {last}", "givenName": first, "sn": last,
                 "userPassword": _ssha(password)}
        if mail:
            attrs["mail"] = mail
        add(f"uid={uid},{PEOPLE}", ["inetOrgPerson"], attrs)
    # Not a person: the user filter must keep it out of searches.
    add(f"cn=annex printer,{PEOPLE}", ["organizationalRole"], {"cn": "annex printer"})
