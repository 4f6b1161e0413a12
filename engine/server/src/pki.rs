//! Certificates: a development PKI made on first start, and the TLS configurations built
//! from PEM files.
//!
//! The development PKI is a CA, a server certificate for `localhost`, `127.0.0.1` and
//! `::1`, one frontend client certificate and one administrator client certificate, all
//! signed by the CA and written as PEM files into the data directory. Clients must present
//! a certificate from the configured CA (mutual TLS); a client whose certificate's SHA-256
//! fingerprint is on the administrator list may also call administrator operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use portvakt_client::tls::{TlsError, load_certs, load_key};
use portvakt_client::tls::{provider, roots};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating a key or certificate failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error(transparent)]
    Load(#[from] TlsError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A client's certificate was refused.
    #[error("client certificate refused: {0}")]
    Refused(String),
}

/// The files of a PKI.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// The CA certificate clients and the server trust.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server: (PathBuf, PathBuf),
    /// The frontend client's certificate and key.
    pub frontend: (PathBuf, PathBuf),
    /// The administrator client's certificate and key.
    pub admin: (PathBuf, PathBuf),
}

impl PkiFiles {
    /// The standard names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        let pair = |n: &str| (dir.join(format!("{n}.pem")), dir.join(format!("{n}.key")));
        Self {
            ca: dir.join("ca.pem"),
            server: pair("server"),
            frontend: pair("frontend"),
            admin: pair("admin"),
        }
    }

    fn all(&self) -> [&Path; 7] {
        [
            &self.ca,
            &self.server.0,
            &self.server.1,
            &self.frontend.0,
            &self.frontend.1,
            &self.admin.0,
            &self.admin.1,
        ]
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

/// Makes a development PKI in `dir` unless all its files exist already; returns the files
/// and whether they were made now.
pub fn ensure_dev_pki(dir: &Path) -> Result<(PkiFiles, bool), PkiError> {
    let files = PkiFiles::in_dir(dir);
    if files.all().iter().all(|p| p.exists()) {
        return Ok((files, false));
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Portvakt development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    write(&files.ca, &ca.pem(), false)?;
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    for (pair, sans, cn, usage) in [
        (
            &files.server,
            vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ],
            "portvakt server",
            server,
        ),
        (
            &files.frontend,
            vec!["frontend".to_owned()],
            "portvakt frontend",
            client.clone(),
        ),
        (
            &files.admin,
            vec!["admin".to_owned()],
            "portvakt administrator",
            client,
        ),
    ] {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(&pair.0, &cert.pem(), false)?;
        write(&pair.1, &key.serialize_pem(), true)?;
    }
    Ok((files, true))
}

/// The SHA-256 fingerprint of a certificate, as lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The server's TLS configuration: TLS 1.3 only, the protocol's ALPN, and a client
/// certificate from `ca`, one made for client authentication and not the server's own;
/// a client without one is a push device (device frames only).
pub fn server_tls(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ServerConfig, PkiError> {
    let roots = Arc::new(roots(ca)?);
    let inner =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            // A connection without a certificate is a push device's: it may send device
            // frames only, each proved by the device's own key (the service's `Role`).
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
    let own = load_certs(cert)?;
    let verifier = Arc::new(ClientsOnly {
        inner,
        roots,
        own: own.first().map(|c| c.clone().into_owned()),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(own, load_key(key)?)?;
    config.alpn_protocols = vec![portvakt_wire::ALPN.to_vec()];
    Ok(config)
}

/// The extended key usage `id-kp-clientAuth` (RFC 5280 §4.2.1.12), DER-encoded.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// Accepts what rustls's own verifier accepts, and only then a certificate that names the
/// client-authentication usage and is not the server's own. (rustls checks the usage only
/// where a certificate lists usages at all, so a certificate made for nothing in
/// particular, such as a server certificate without usages, would pass as a frontend.)
#[derive(Debug)]
struct ClientsOnly {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    roots: Arc<rustls::RootCertStore>,
    own: Option<CertificateDer<'static>>,
}

impl rustls::server::danger::ClientCertVerifier for ClientsOnly {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let refused = |why: &str| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(PkiError::Refused(why.to_owned())),
            )))
        };
        if self.own.as_ref().is_some_and(|own| own == end_entity) {
            return Err(refused(
                "the server's own certificate cannot act as a client",
            ));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| refused("the certificate cannot be parsed"))?;
        cert.verify_for_usage(
            provider().signature_verification_algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::required(CLIENT_AUTH),
            None,
            None,
        )
        .map_err(|_| refused("the certificate is not made for client authentication"))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client's TLS configuration: trusting `ca` and presenting `cert`.
pub fn client_tls(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, PkiError> {
    Ok(portvakt_client::tls::from_pem_files(ca, cert, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::danger::ClientCertVerifier;

    #[test]
    fn only_certificates_made_for_clients_act_as_clients() {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let make = |usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut p = CertificateParams::new(vec!["x".to_owned()]).unwrap();
            p.extended_key_usages = usages;
            p.signed_by(&KeyPair::generate().unwrap(), &ca)
                .unwrap()
                .der()
                .clone()
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let roots = Arc::new(roots);
        let inner =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .unwrap();
        // The server's own certificate, made (wrongly) for clients as well.
        let own = make(vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]);
        let v = ClientsOnly {
            inner,
            roots,
            own: Some(own.clone()),
        };
        let now = rustls::pki_types::UnixTime::now();
        let verdict = |cert: &CertificateDer<'_>| v.verify_client_cert(cert, &[], now).map(|_| ());
        assert!(verdict(&make(vec![ExtendedKeyUsagePurpose::ClientAuth])).is_ok());
        for (cert, expected) in [
            // Passes rustls's own check, refused by the required usage.
            (make(vec![]), "not made for client authentication"),
            // Refused by rustls's own check already.
            (make(vec![ExtendedKeyUsagePurpose::ServerAuth]), "Purpose"),
            (own, "the server's own certificate"),
        ] {
            let err = format!("{:?}", verdict(&cert).unwrap_err());
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn dev_pki_is_made_once_and_loads() {
        let dir = std::env::temp_dir().join(format!("portvakt-pki-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (files, made) = ensure_dev_pki(&dir).unwrap();
        assert!(made);
        let (_, made_again) = ensure_dev_pki(&dir).unwrap();
        assert!(!made_again, "existing files are kept");
        server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
        client_tls(&files.ca, &files.frontend.0, &files.frontend.1).unwrap();
        let admin = &load_certs(&files.admin.0).unwrap()[0];
        let frontend = &load_certs(&files.frontend.0).unwrap()[0];
        assert_eq!(fingerprint(admin).len(), 64);
        assert_ne!(fingerprint(admin), fingerprint(frontend));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.admin.1)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are private to their owner");
        }
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(matches!(load_certs(&bad), Err(TlsError::Pem { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
