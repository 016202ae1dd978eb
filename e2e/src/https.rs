//! A small HTTPS client for the CCM's serving port, which serves a self-signed certificate:
//! the certificate is not checked (the tests check what is served, not who serves it).

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connect(port: u16) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost")?.to_owned())?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to :{port}"))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}

/// The certificate 127.0.0.1:`port` serves (DER).
pub fn peer_certificate(port: u16) -> Result<Vec<u8>> {
    let mut tls = connect(port)?;
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let chain = tls.conn.peer_certificates().context("no certificate served")?;
    Ok(chain.first().context("an empty chain")?.to_vec())
}

/// `GET path` over HTTPS on 127.0.0.1:`port`, with `token` as a bearer token when given.
/// Returns the whole response: status line, headers and body (`HTTP/1.1 200 OK…`).
pub fn get(port: u16, path: &str, token: Option<&str>) -> Result<String> {
    let mut tls = connect(port)?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n")?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A server that closes without TLS's close_notify still sent the whole response.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(err) => return Err(err).with_context(|| format!("reading GET {path} on :{port}")),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The status code of a response from [`get`].
pub fn status(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_default()
}
