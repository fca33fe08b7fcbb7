"""TLS and ACLs seen from Python's ssl module and the Apache Thrift client (docs/SECURITY.md).

A second pproxy process (embedded mode) serves TLS and plaintext on one port, verifies client
certificates against a test CA, and admits only the principal whose certificate subject is
CN=py-client. Certificates are made with the openssl command line.
"""

import json
import ssl
import subprocess

import pytest
from thrift.protocol import TCompactProtocol
from thrift.transport import TSocket, TSSLSocket, TTransport

from producerProxy import ProducerService
from producerProxy.ttypes import Message

from conftest import start_proxy
from pproxy_launcher import embedded_yaml, free_ports

TOPIC = "py_tls"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=str(cwd), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _leaf(d, name, cn, ext):
    (d / ("%s.ext" % name)).write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "%s.key" % name, "-out", "%s.csr" % name, "-subj", "/CN=%s" % cn, cwd=d)
    _openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", "%s.pem" % name,
             "-extfile", "%s.ext" % name, cwd=d)


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory):
    d = tmp_path_factory.mktemp("pproxy_tls")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=py test ca",
             cwd=d)
    _leaf(d, "server", "pproxy",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "py-client", "extendedKeyUsage=clientAuth\n")
    port, admin_port = free_ports(2)
    yaml = embedded_yaml(port, admin_port, d, extra=(
        "tls:\n  certFile: server.pem\n  keyFile: server.key\n  clientCaFile: ca.pem\n"
        "acl:\n  enabled: true\n  principals:\n"
        "    - {name: py, subjects: ['CN=py-client'], topics: [%s], delay: true}\n"
        % json.dumps(TOPIC)))
    p = start_proxy(d, yaml, admin_port)
    try:
        yield {"port": port, "dir": d}
    finally:
        p.stop()


def _context(d, client_cert):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(d / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    return ctx


def _send(transport, topic=TOPIC):
    framed = TTransport.TFramedTransport(transport)
    framed.open()
    try:
        client = ProducerService.Client(TCompactProtocol.TCompactProtocol(framed))
        return client.sendSync(Message(topic=topic, key="k", body=b"from python"), 5000).code
    finally:
        framed.close()


def _tls(tls_proxy, client_cert):
    ctx = _context(tls_proxy["dir"], client_cert)
    return TSSLSocket.TSSLSocket("127.0.0.1", tls_proxy["port"], ssl_context=ctx,
                                 server_hostname="127.0.0.1")


def test_python_mutual_tls_client_is_allowed(tls_proxy):
    assert _send(_tls(tls_proxy, client_cert=True)) == 0


def test_python_tls_client_checks_the_server_certificate(tls_proxy):
    # The proxy's certificate is not trusted by the system store: the handshake must fail.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    sock = TSSLSocket.TSSLSocket("127.0.0.1", tls_proxy["port"], ssl_context=ctx,
                                 server_hostname="127.0.0.1")
    with pytest.raises(TTransport.TTransportException):
        _send(sock)


def test_python_tls_without_certificate_is_refused_13(tls_proxy):
    assert _send(_tls(tls_proxy, client_cert=False)) == 13


def test_python_plaintext_is_refused_13(tls_proxy):
    assert _send(TSocket.TSocket("127.0.0.1", tls_proxy["port"])) == 13


def test_python_allowed_principal_other_topic_is_refused_13(tls_proxy):
    assert _send(_tls(tls_proxy, client_cert=True), topic="py_other") == 13
